"""`raft refine`: Stage 1 data refinement from the command line or a YAML config (`--config refine.yaml`).

With no model or dataset given it refines the bundled example data with the embedded Gemma 3 270M as backbone,
fuser and judge, and the offline MiniLM as embedding model. Run it again to resume an interrupted run.
"""

from __future__ import annotations

from .common import config_parser, run_command


def main(config) -> None:
    from raft_trainer.refine import refine
    from raft_trainer.refine.summary import format_summary

    run_command(
        "refine",
        lambda: refine(config),
        lambda summary: (
            f"{format_summary(summary)}\nrefined data: {config.output_dir}/refined.jsonl "
            "(train on it with `raft train --dataset_name ...`)"
        ),
    )


def make_parser():
    from raft_trainer.refine import RefineConfig

    return config_parser(RefineConfig, "raft refine")


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
