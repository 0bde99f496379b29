"""`raft refine`: Stage 1 data refinement from the command line or a YAML config (`--config refine.yaml`).

With no model or dataset given it refines the bundled example data with the embedded Gemma 3 270M as backbone,
fuser and judge, and the offline MiniLM as embedding model. Run it again to resume an interrupted run.
"""

from __future__ import annotations

from .errors import exit_on_backend_error


def main(config) -> None:
    from raft_trainer.refine import refine
    from raft_trainer.refine.summary import format_summary

    with exit_on_backend_error("refine"):
        summary = refine(config)
    print(format_summary(summary))
    print(f"refined data: {config.output_dir}/refined.jsonl (train on it with `raft train --dataset_name ...`)")


def make_parser():
    from trl import TrlParser

    from raft_trainer.refine import RefineConfig

    return TrlParser((RefineConfig,), prog="raft refine", allow_abbrev=False)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
