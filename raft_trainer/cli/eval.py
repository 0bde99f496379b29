"""`raft eval`: score checkpoints and the base model on domain accuracy and general-ability retention.

    raft eval --models sft=runs/sft raft=runs/raft --baseline sft --judge_models judge@http://127.0.0.1:8000/v1

With no model given it scores the embedded Gemma 3 270M (as `base`) on the bundled sets.
"""

from __future__ import annotations

from .common import config_parser, run_command


def main(config) -> None:
    from raft_trainer.eval import evaluate
    from raft_trainer.eval.report import markdown_table

    run_command(
        "eval",
        lambda: evaluate(config),
        lambda report: f"{markdown_table(report)}\nresults: {config.output_dir}/eval_results.json, eval_results.md",
    )


def make_parser():
    from raft_trainer.eval import EvalConfig

    return config_parser(EvalConfig, "raft eval")


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
