"""Run `raft refine` on 30 generated rows with a tiny local model (rewriter, fuser, judge) and the real MiniLM.

Usage: python refine_run.py MODEL_DIR OUTPUT_DIR   (used by the kill-and-resume test)
"""

import sys

from datasets import Dataset

from raft_trainer.refine import RefineConfig, refine

WORDS = [
    "capital",
    "France",
    "Paris",
    "plants",
    "absorb",
    "carbon",
    "dioxide",
    "two",
    "plus",
    "four",
    "court",
    "contract",
]


def main(model_dir: str, output_dir: str) -> None:
    rows = [{"id": f"row-{i:02d}", "question": f"What is {WORDS[i % 12]} ?",
             "answer": f"The {WORDS[i % 12]} is {WORDS[(i * 5) % 12]} and {WORDS[(i * 7) % 12]} ."} for i in range(30)]  # fmt: skip
    config = RefineConfig(
        output_dir=output_dir, rewrite_model=model_dir, similarity_threshold=0.3, batch_size=2, fusion_rounds=2,
        rewrite_temperature=1.0, rewrite_max_new_tokens=24, fusion_max_new_tokens=24, judge_max_new_tokens=3,
        stop_sequences=[" .", " ?"],  # replies that end (a reply cut at the token cap is never ŷ), so some rows fuse
    )  # fmt: skip
    refine(config, Dataset.from_list(rows))


if __name__ == "__main__":
    main(*sys.argv[1:3])
