"""Retention (checkpoint ÷ base, for every general metric) and domain gain (relative to a baseline), written as JSON,
a markdown table and a plot of domain accuracy against mean general retention."""

from __future__ import annotations

import os
from statistics import mean

from ..output_files import write_json_atomic, write_text_atomic
from .metrics import domain_keys, retention_directions


def retention(score: float | None, base: float | None, lower_is_better: bool = False) -> float | None:
    """checkpoint ÷ base (base ÷ checkpoint for perplexity): 1.0 = nothing lost.

    ```python
    >>> retention(0.45, 0.5), retention(12.0, 10.0, lower_is_better=True), retention(0.3, 0.0)
    (0.9, 0.8333333333333334, None)

    ```
    """
    if score is None or base is None:
        return None
    numerator, denominator = (base, score) if lower_is_better else (score, base)
    return numerator / denominator if denominator else None


def relative_gain(score: float | None, baseline: float | None) -> float | None:
    """(score − baseline) ÷ baseline, the paper's "relative gain over SFT"."""
    return (score - baseline) / baseline if score is not None and baseline else None


def retention_scores(scores: dict, base_scores: dict) -> dict:
    """`{key: retention}` for every general-ability key of the registered metrics present in `scores`, plus their
    `mean` (`None` when none is readable); directions from `metrics.retention_directions`."""
    kept = {
        key: retention(scores.get(key), base_scores.get(key), lower_is_better=not higher)
        for key, higher in retention_directions(scores).items()
        if key in scores
    }
    readable = [v for v in kept.values() if v is not None]
    return {**kept, "mean": mean(readable) if readable else None}


def add_relative_scores(results: dict, baseline: str = "base") -> dict:
    """Add `retention` (per general metric, and their mean) and `domain_gain` (vs `baseline`) to every model."""
    if baseline not in results:
        raise ValueError(f"baseline {baseline!r} is not among the models {list(results)}.")
    base, reference = results["base"]["scores"], results[baseline]["scores"]
    for entry in results.values():
        scores = entry["scores"]
        entry["retention"] = retention_scores(scores, base)
        entry["domain_gain"] = {
            m: relative_gain(scores.get(m), reference.get(m)) for m in domain_keys() if m in scores
        }
    return {"baseline": baseline, "models": results}


def _cell(value) -> str:
    return "—" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_table(report: dict) -> str:
    """One row per model: domain scores, general scores, retention, drift."""
    models = report["models"]
    hidden = ("/", "unreadable", "unsupported", "scored")  # per-category and count fields stay in the JSON
    score_keys = sorted({k for e in models.values() for k in e["scores"] if not any(h in k for h in hidden)})
    retention_keys = sorted({k for e in models.values() for k in e["retention"]})
    header = ["model", *score_keys, *(f"retention {k}" for k in retention_keys), "seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in models.items():
        cells = [
            name,
            *(_cell(entry["scores"].get(k)) for k in score_keys),
            *(_cell(entry["retention"].get(k)) for k in retention_keys),
            _cell(entry["seconds"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        "\n".join(lines)
        + f"\n\nDomain gains are relative to `{report['baseline']}`; retention is relative to `base`.\n"
    )


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend, or `None` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(plt, figure, path: str, dpi: int = 120) -> bool:
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return True


def plot_tradeoff(report: dict, path: str) -> bool:
    """Domain accuracy (accuracy, judge accuracy, else F1) against mean general retention, one point per model."""
    plt = pyplot()
    if plt is None:
        return False
    figure, axes = plt.subplots(figsize=(5, 4))
    for name, entry in report["models"].items():
        domain = next((entry["scores"][m] for m in domain_keys() if entry["scores"].get(m) is not None), None)
        if domain is None or entry["retention"]["mean"] is None:
            continue
        axes.scatter(entry["retention"]["mean"], domain)
        axes.annotate(name, (entry["retention"]["mean"], domain), textcoords="offset points", xytext=(4, 4))
    axes.set_xlabel("general ability retained (mean, base = 1)")
    axes.set_ylabel("domain accuracy")
    axes.grid(alpha=0.3)
    return save_figure(plt, figure, path)


CARD_SECTION = "## Evaluation (raft eval)"


def add_to_model_cards(report: dict) -> list[str]:
    """Write the evaluation into the model card (`README.md`) of every evaluated checkpoint folder that has one
    written by `RAFTTrainer` (it holds the `## RAFT settings` section): the table rows of `base` and that model,
    replacing an earlier such section. Returns the cards written."""
    written = []
    for name, entry in report["models"].items():
        card = os.path.join(str(entry.get("path", "")), "README.md")
        if name == "base" or not os.path.isfile(card):
            continue
        with open(card, encoding="utf-8") as f:
            text = f.read()
        if "## RAFT settings" not in text:
            continue
        rows = {"baseline": report["baseline"], "models": {k: report["models"][k] for k in ("base", name)}}
        section = f"{CARD_SECTION}\n\n{markdown_table(rows)}\n"
        head, _, rest = text.partition(CARD_SECTION)
        tail = rest[rest.find("\n## ") + 1 :] if "\n## " in rest else ""
        text = head.rstrip() + "\n\n" + section + ("\n" + tail if tail else "")
        write_text_atomic(card, text)
        written.append(card)
    return written


def write_report(report: dict, output_dir: str, plot: bool = True) -> None:
    os.makedirs(output_dir, exist_ok=True)
    write_json_atomic(os.path.join(output_dir, "eval_results.json"), report)
    write_text_atomic(os.path.join(output_dir, "eval_results.md"), markdown_table(report))
    if plot and not plot_tradeoff(report, os.path.join(output_dir, "eval_tradeoff.png")):
        print("raft eval: matplotlib is not installed; no plot (pip install matplotlib)")
