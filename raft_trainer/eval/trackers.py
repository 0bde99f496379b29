"""`raft eval --report_to tensorboard|wandb|trackio`: the evaluation where the training runs are looked at.

Each model's scores, retention and domain gains are logged as scalars `<model>/<group>/<key>` (group `scores`,
`retention` or `domain_gain`) at step 0, and the markdown table as text (TensorBoard) or a table (W&B, trackio), through
each tracker's own client (`torch.utils.tensorboard`, `wandb`, `trackio`). W&B and trackio read their project from
`WANDB_PROJECT` / `TRACKIO_PROJECT` (default `raft_trainer`).
"""

from __future__ import annotations

import os

TRACKERS = ("tensorboard", "wandb", "trackio")


def check_trackers(report_to: list[str]) -> list[str]:
    """`report_to` without `none`; raises `ValueError` naming an unknown tracker."""
    chosen = [name for name in report_to if name != "none"]
    if unknown := sorted(set(chosen) - set(TRACKERS)):
        raise ValueError(f"--report_to: unknown tracker(s) {unknown}; choose among {list(TRACKERS)} or none.")
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
    """Log the report to every tracker of `report_to` (see the module docstring). Raises `ImportError` naming the
    package to install when a tracker's client is missing."""
    from .report import markdown_table

    values, table = scalars(report), markdown_table(report)
    for tracker in check_trackers(report_to):
        if tracker == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise ImportError("--report_to tensorboard needs `pip install tensorboard`") from error
            with SummaryWriter(log_dir=logging_dir) as writer:
                for tag, value in values.items():
                    writer.add_scalar(tag, value, 0)
                writer.add_text("eval_results", table, 0)
        else:
            try:
                client = __import__(tracker)
            except ImportError as error:
                raise ImportError(f"--report_to {tracker} needs `pip install {tracker}`") from error
            project = os.environ.get(f"{tracker.upper()}_PROJECT", "raft_trainer")
            client.init(project=project, name=run_name)
            rows = [line.strip("|").split(" | ") for line in table.splitlines()[2:] if line.startswith("|")]
            header = table.splitlines()[0].strip("|").split(" | ")
            client.log({**values, "eval_results": client.Table(columns=[h.strip() for h in header], data=rows)})
            client.finish()
