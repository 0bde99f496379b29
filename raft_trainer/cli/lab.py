"""`raft lab`: every method of the paper's comparison on the same data, budget and seeds, and a report.

raft lab                       # default preset: base, sft, on_policy, raft on the embedded Gemma 3 270M, 1 seed
raft lab --seeds 3             # the spread over seeds
raft lab --preset full         # every method
raft lab --preset smoke        # a tiny model built on the fly: checks the pipeline in minutes
"""

from __future__ import annotations

from .errors import exit_on_backend_error


def main(config) -> None:
    from raft_trainer.lab import run_lab

    with exit_on_backend_error("lab"):
        run_lab(config)
    print(open(f"{config.output_dir}/lab_results.md", encoding="utf-8").read())
    print(f"results: {config.output_dir}/lab_results.json, lab_results.md, lab_tradeoff.png, lab_curves.png")


def make_parser():
    from trl import TrlParser

    from raft_trainer.lab import LabConfig

    return TrlParser((LabConfig,), prog="raft lab", allow_abbrev=False)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
