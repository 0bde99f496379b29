"""`raft eval --report_to tensorboard|wandb|trackio`: the evaluation where the training runs are looked at.

Each model's scores, retention and domain gains are logged as scalars `<model>/<group>/<key>` (group `scores`,
`retention` or `domain_gain`) at step 0, and the markdown table as text (TensorBoard) or a table (W&B, trackio), through
each tracker's own client (`torch.utils.tensorboard`, `wandb`, `trackio`). W&B and trackio read their project from
`WANDB_PROJECT` / `TRACKIO_PROJECT` (default `raft_trainer`).
"""

from __future__ import annotations

import importlib.util
import os

from ..errors import MissingPackageError

TRACKERS = ("tensorboard", "wandb", "trackio")  # each is also the package its client needs


def check_trackers(report_to: list[str]) -> list[str]:
    """`report_to` without `none`. Raises `ValueError` naming an unknown tracker and `MissingPackageError` naming
    the package of a tracker whose client is not installed (before any model loads)."""
    chosen = [name for name in report_to if name != "none"]
    if unknown := sorted(set(chosen) - set(TRACKERS)):
        raise ValueError(f"--report_to: unknown tracker(s) {unknown}; choose among {list(TRACKERS)} or none.")
    for tracker in chosen:
        if importlib.util.find_spec(tracker) is None:
            raise MissingPackageError(f"--report_to {tracker} needs `pip install {tracker}`")
    return chosen


def scalars(report: dict) -> dict[str, float]:
    """`{"<model>/<group>/<key>": value}` for every numeric score, retention and domain gain of the report."""
    values = {}
    for model, entry in report["models"].items():
        for group in ("scores", "retention", "domain_gain"):
            for key, value in (entry.get(group) or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    values[f"{model}/{group}/{key}"] = float(value)
    return values


def log_report(report: dict, report_to: list[str], logging_dir: str, run_name: str) -> None:
    """Log the report to every tracker of `report_to` (see the module docstring). Raises `MissingPackageError`
    naming the package to install when a tracker's client is missing."""
    from .report import markdown_table

    values, table = scalars(report), markdown_table(report)
    for tracker in check_trackers(report_to):
        if tracker == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            with SummaryWriter(log_dir=logging_dir) as writer:
                for tag, value in values.items():
                    writer.add_scalar(tag, value, 0)
                writer.add_text("eval_results", table, 0)
        else:
            client = __import__(tracker)
            project = os.environ.get(f"{tracker.upper()}_PROJECT", "raft_trainer")
            client.init(project=project, name=run_name)
            rows = [line.strip("|").split(" | ") for line in table.splitlines()[2:] if line.startswith("|")]
            header = table.splitlines()[0].strip("|").split(" | ")
            client.log({**values, "eval_results": client.Table(columns=[h.strip() for h in header], data=rows)})
            client.finish()
