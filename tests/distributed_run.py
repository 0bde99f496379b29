"""Launched by tests/test_distributed.py with torchrun: a short RAFT run that writes each rank's λ per step."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from datasets import Dataset  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from raft_trainer import RAFTConfig, RAFTTrainer  # noqa: E402

from conftest import build_model, build_tokenizer  # noqa: E402


class LambdaPerStep(TrainerCallback):
    def __init__(self, trainer):
        self.trainer, self.values = trainer, []

    def on_step_end(self, args, state, control, **kwargs):
        self.values.append(self.trainer.balancer.lam)


def main(output_dir: str, deepspeed_config: str | None) -> None:
    rows = [
        ("What is the capital of France ?", " The capital of France is Paris ."),
        ("What is two plus two ?", " Two plus two is four ."),
        ("Which gas do plants absorb ?", " Plants absorb carbon dioxide from the air ."),
        ("Who wrote the contract law ?", " The court ruled that the contract was void ."),
    ] * 4
    dataset = Dataset.from_dict({"prompt": [p for p, _ in rows], "completion": [c for _, c in rows]})
    tokenizer = build_tokenizer()
    args = RAFTConfig(
        output_dir=output_dir, max_steps=3, per_device_train_batch_size=2, gradient_accumulation_steps=2,
        logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, bf16=False, max_completion_length=6,
        distillation_topk=16, seed=0, deepspeed=deepspeed_config,
    )  # fmt: skip
    trainer = RAFTTrainer(build_model(tokenizer), args=args, train_dataset=dataset, processing_class=tokenizer,
                          teacher_model=build_model(tokenizer))  # fmt: skip
    recorder = LambdaPerStep(trainer)
    trainer.add_callback(recorder)
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    with open(os.path.join(output_dir, f"rank{os.environ['RANK']}.json"), "w") as f:
        json.dump({"lambda": recorder.values, "loss": losses}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
