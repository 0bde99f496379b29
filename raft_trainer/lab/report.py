"""The lab's report: per-method means and spreads over seeds (`lab_results.json`), a table like the paper's Table 1
(`lab_results.md`), the trade-off plot (`lab_tradeoff.png`) and RAFT's λ and loss curves (`lab_curves.png`)."""

from __future__ import annotations

import math
import os
from statistics import mean, stdev

from ..eval.report import pyplot, retention_scores, save_figure

SUMMARISED = (
    "domain_accuracy",
    "general_retention",
    "probe_retention",
    "ifeval_retention",
    "perplexity_retention",
    "perplexity",
    "probe_accuracy",
    "ifeval_prompt_level_strict_acc",
    "ifeval_inst_level_strict_acc",
    "ifeval_prompt_level_loose_acc",
    "ifeval_inst_level_loose_acc",
    "drift_kl",
    "train_seconds",
)
TARGET = "RAFT's mean domain accuracy ≥ SFT's, its mean general retention ≥ SFT's + 0.05, and domain accuracy above on_policy's"


def run_metrics(scores: dict, base_scores: dict, train_seconds: float) -> dict:
    """One trained model's lab metrics: domain accuracy, retention per general metric and their mean, and raw scores.

    `general_retention` is `raft eval`'s `retention.mean`: the mean of checkpoint ÷ base over probe accuracy, IFEval
    strict prompt- and instruction-level accuracy, and base ÷ checkpoint perplexity (1.0 = nothing lost).
    """
    kept = retention_scores(scores, base_scores)
    ifeval = [kept.get(m) for m in ("ifeval_prompt_level_strict_acc", "ifeval_inst_level_strict_acc")]
    ifeval = [v for v in ifeval if v is not None]
    return {
        "domain_accuracy": scores.get("domain_accuracy"),
        "general_retention": kept["mean"],
        "probe_retention": kept.get("probe_accuracy"),
        "ifeval_retention": mean(ifeval) if ifeval else None,
        "perplexity_retention": kept.get("perplexity"),
        "perplexity": scores.get("perplexity"),
        "probe_accuracy": scores.get("probe_accuracy"),
        **{key: scores.get(key) for key in SUMMARISED if key.startswith("ifeval_") and key != "ifeval_retention"},
        "drift_kl": scores.get("drift_kl"),
        "train_seconds": train_seconds,
    }


def spread(values: list) -> dict:
    """`{"mean", "std", "per_seed"}` (sample standard deviation; 0 for one seed; `None`s left out)."""
    present = [v for v in values if v is not None and math.isfinite(v)]
    return {
        "mean": mean(present) if present else None,
        "std": stdev(present) if len(present) > 1 else 0.0 if present else None,
        "per_seed": values,
    }


def summarise(runs: list[dict], methods: list[str]) -> dict:
    """Per method, each lab metric over its seeds (runs in seed order)."""
    out = {}
    for method in methods:
        mine = sorted((r for r in runs if r["method"] == method), key=lambda r: r["seed"])
        out[method] = {key: spread([r["metrics"][key] for r in mine]) for key in SUMMARISED}
    return out


def verdict(methods: dict) -> dict:
    """Whether the lab's target holds on the means (needs sft, on_policy and raft)."""
    if not {"sft", "raft", "on_policy"} <= set(methods):
        return {"target": TARGET, "met": None, "reason": "needs the sft, on_policy and raft methods"}
    m = {k: {q: methods[k][q]["mean"] for q in ("domain_accuracy", "general_retention")} for k in methods}
    checks = {
        "domain_accuracy_raft_minus_sft": m["raft"]["domain_accuracy"] - m["sft"]["domain_accuracy"],
        "general_retention_raft_minus_sft": m["raft"]["general_retention"] - m["sft"]["general_retention"],
        "domain_accuracy_raft_minus_on_policy": m["raft"]["domain_accuracy"] - m["on_policy"]["domain_accuracy"],
    }
    met = (
        checks["domain_accuracy_raft_minus_sft"] >= 0
        and checks["general_retention_raft_minus_sft"] >= 0.05
        and checks["domain_accuracy_raft_minus_on_policy"] > 0
    )
    return {"target": TARGET, "met": met, **checks}


def _pm(entry: dict, digits: int = 3) -> str:
    if entry["mean"] is None:
        return "—"
    return (
        f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}"
        if len(entry["per_seed"]) > 1
        else f"{entry['mean']:.{digits}f}"
    )


def _relative(value: float | None, reference: float | None) -> str:
    return "—" if value is None or not reference else f"{100 * (value - reference) / reference:+.1f}%"


def markdown(report: dict) -> str:
    """A table like the paper's Table 1: absolute values (mean ± std over seeds), relative to SFT, retention vs base."""
    methods, config = report["methods"], report["config"]
    sft = methods.get("sft", {})
    seeds = config["seeds"]
    lines = [
        f"# raft lab: {config['domain']} on {config['model']}",
        "",
        f"{seeds} seed{'s' if seeds > 1 else ''} per method (mean ± sample std over seeds); {config['max_steps']} "
        f"optimizer steps of {config['per_device_train_batch_size'] * config['gradient_accumulation_steps']} rows at "
        f"lr {config['learning_rate']} for every trained method; {report['sizes']['train']} training and "
        f"{report['sizes']['test']} held-out rows (split by entity); {report['sizes']['probes']} general probes the "
        f"original model answers, {report['sizes']['ifeval']} IFEval prompts (upstream checkers). Stage 1: "
        f"{report['stage1']['description']}. Teacher's reference-use accuracy (original model shown the gold answer): "
        f"{report['teacher_reference_accuracy']:.3f}.",
        "",
        "| method | domain accuracy | vs SFT | general retention | vs SFT | probe ret. | IFEval ret. | perplexity "
        "ret. | perplexity | drift KL | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in methods.items():
        lines.append(
            f"| {name} | {_pm(entry['domain_accuracy'])} | "
            f"{_relative(entry['domain_accuracy']['mean'], sft.get('domain_accuracy', {}).get('mean'))} | "
            f"{_pm(entry['general_retention'])} | "
            f"{_relative(entry['general_retention']['mean'], sft.get('general_retention', {}).get('mean'))} | "
            f"{_pm(entry['probe_retention'])} | {_pm(entry['ifeval_retention'])} | "
            f"{_pm(entry['perplexity_retention'])} | {_pm(entry['perplexity'], 2)} | {_pm(entry['drift_kl'])} | "
            f"{_pm(entry['train_seconds'], 0)} |"
        )
    target = report["verdict"]
    lines += [
        "",
        f"Target ({target['target']}): "
        + (
            "not evaluated (" + target["reason"] + ")."
            if target["met"] is None
            else f"**{'met' if target['met'] else 'not met'}** — domain accuracy RAFT − SFT "
            f"{target['domain_accuracy_raft_minus_sft']:+.3f}, general retention RAFT − SFT "
            f"{target['general_retention_raft_minus_sft']:+.3f}, domain accuracy RAFT − on_policy "
            f"{target['domain_accuracy_raft_minus_on_policy']:+.3f}."
        ),
    ]
    lines += [
        "",
        f"Training and evaluation of the runs: {report['run_seconds'] / 60:.1f} min; this invocation "
        f"{report['wall_seconds'] / 60:.1f} min wall, on {report['machine']}.",
    ]
    return "\n".join(lines) + "\n"


def plot_tradeoff(report: dict, path: str) -> bool:
    """Domain accuracy against mean general retention, one point per method with its spread over seeds."""
    plt = pyplot()
    if plt is None:
        return False
    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    for name, entry in report["methods"].items():
        x, y = entry["general_retention"], entry["domain_accuracy"]
        if x["mean"] is None or y["mean"] is None:
            continue
        axes.errorbar(x["mean"], y["mean"], xerr=x["std"], yerr=y["std"], fmt="o", capsize=3, label=name)
        axes.annotate(name, (x["mean"], y["mean"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.set_xlabel("general retention (checkpoint ÷ original, mean of probes, IFEval, perplexity)")
    axes.set_ylabel("held-out domain accuracy")
    axes.set_title(f"raft lab: {report['config']['domain']}, {report['config']['seeds']} seed(s), mean ± std")
    axes.grid(alpha=0.3)
    return save_figure(plt, figure, path)


def plot_curves(runs: list[dict], path: str) -> bool:
    """λ, L_SFT and L_KL per optimizer step for every distilling run (one line per method and seed)."""
    curves = [r for r in runs if any("raft/lambda" in log for log in r.get("log_history", []))]
    plt = pyplot()
    if not curves or plt is None:
        return False
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for run in curves:
        logs = [log for log in run["log_history"] if "raft/lambda" in log and "step" in log]
        steps = [log["step"] for log in logs]
        for axis, key in zip(axes, ("raft/lambda", "raft/sft_loss", "raft/kl_loss")):
            points = [(s, log[key]) for s, log in zip(steps, logs) if key != "raft/lambda" or log[key] > 0]  # log axis
            axis.plot(*zip(*points), label=f"{run['method']} s{run['seed']}", alpha=0.8)
    for axis, title in zip(axes, ("λ", "L_SFT", "L_KL")):
        axis.set_title(title)
        axis.set_xlabel("optimizer step")
        axis.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[-1].legend(fontsize=7)
    return save_figure(plt, figure, path, dpi=110)


def machine() -> str:
    import platform

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{os.cpu_count()}-core CPU, no GPU"
    return f"{device}, {platform.system()} {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}"
