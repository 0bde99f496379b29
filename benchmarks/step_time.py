"""Median optimizer-step wall time of SFTTrainer and RAFTTrainer on the same model, data and batch, side by side.

python benchmarks/step_time.py                      # tiny Llama built in code (seconds)
python benchmarks/step_time.py --model gemma        # Gemma 3 270M (the embedded default; minutes on CPU)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from raft_trainer import RAFTConfig, RAFTTrainer
from raft_trainer.data import load_data


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times, self._start = [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def tiny_model_dir() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import build_model, build_tokenizer

    path = tempfile.mkdtemp(prefix="raft-bench-")
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def time_trainer(trainer_cls, config_cls, model: str, steps: int, warmup: int, **overrides) -> list[float]:
    common = dict(
        output_dir=tempfile.mkdtemp(), max_steps=steps + warmup, report_to=[], save_strategy="no", logging_steps=1,
        bf16=False, seed=0, disable_tqdm=True,
    )  # fmt: skip
    timer = StepTimer()
    trainer = trainer_cls(model, args=config_cls(**common, **overrides), train_dataset=load_data(None))
    trainer.add_callback(timer)
    trainer.train()
    return timer.times[warmup:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="'tiny', 'gemma', or a model name/path")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--max_completion_length", type=int, default=16)
    parser.add_argument("--topk", type=int, default=512)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.model == "tiny":
        model = tiny_model_dir()
    elif args.model == "gemma":
        from raft_trainer.default_model import default_model_path

        model = default_model_path()
    else:
        model = args.model
    shared = dict(per_device_train_batch_size=args.batch_size, max_length=256)
    sft = time_trainer(SFTTrainer, SFTConfig, model, args.steps, args.warmup, **shared)
    raft = time_trainer(
        RAFTTrainer, RAFTConfig, model, args.steps, args.warmup, **shared,
        max_completion_length=args.max_completion_length, distillation_topk=args.topk,
    )  # fmt: skip
    result = {
        "model": args.model, "batch_size": args.batch_size, "max_completion_length": args.max_completion_length,
        "topk": args.topk, "steps": args.steps, "sft_median_s": statistics.median(sft),
        "raft_median_s": statistics.median(raft),
    }  # fmt: skip
    result["raft_over_sft"] = result["raft_median_s"] / result["sft_median_s"]
    print(f"{'trainer':<8}{'median step (s)':>18}")
    print(f"{'SFT':<8}{result['sft_median_s']:>18.4f}\n{'RAFT':<8}{result['raft_median_s']:>18.4f}")
    print(f"RAFT / SFT step time: {result['raft_over_sft']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
