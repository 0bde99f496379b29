"""`raft lab`: every method of the paper's comparison on the same data, budget and seeds, and a report.

raft lab                       # default preset: base, sft, on_policy, raft on the embedded Gemma 3 270M, 1 seed
raft lab --seeds 3             # the spread over seeds
raft lab --preset full         # every method
raft lab --preset smoke        # a tiny model built on the fly: checks the pipeline in minutes
"""

from __future__ import annotations

from .common import config_parser, run_command


def main(config) -> None:
    from raft_trainer.lab import run_lab

    def report(_) -> str:
        table = open(f"{config.output_dir}/lab_results.md", encoding="utf-8").read()
        return (
            f"{table}\nresults: {config.output_dir}/lab_results.json, lab_results.md, lab_tradeoff.png, lab_curves.png"
        )

    run_command("lab", lambda: run_lab(config), report)


def make_parser():
    from raft_trainer.lab import LabConfig

    return config_parser(LabConfig, "raft lab")


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
