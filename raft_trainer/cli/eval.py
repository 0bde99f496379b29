"""`raft eval`: score checkpoints and the base model on domain accuracy and general-ability retention.

    raft eval --models sft=runs/sft raft=runs/raft --baseline sft --judge_models judge@http://127.0.0.1:8000/v1

With no model given it scores the embedded Gemma 3 270M (as `base`) on the bundled sets.
"""

from __future__ import annotations

from .errors import exit_on_backend_error


def main(config) -> None:
    from raft_trainer.eval import evaluate
    from raft_trainer.eval.report import markdown_table

    with exit_on_backend_error("eval"):
        report = evaluate(config)
    print(markdown_table(report))
    print(f"results: {config.output_dir}/eval_results.json, eval_results.md")


def make_parser():
    from trl import TrlParser

    from raft_trainer.eval import EvalConfig

    return TrlParser((EvalConfig,), prog="raft eval", allow_abbrev=False)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
