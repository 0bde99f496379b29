"""Launched by tests/test_distributed.py with torchrun: a short RAFT run that writes what each rank saw.

Usage: `distributed_run.py OUTPUT_DIR '{"deepspeed": "ds.json", "lora": true, ...}'` (options in `main`).
Each rank writes `rank{R}.json`: λ and the EMA state after every optimizer step, the logged losses, the EMA state the
run started from, and the forgetting monitor's logs when it is on.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from datasets import Dataset  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from raft_trainer import RAFTConfig, RAFTTrainer  # noqa: E402

from conftest import build_model, build_tokenizer  # noqa: E402

ROWS = [
    ("What is the capital of France ?", " The capital of France is Paris ."),
    ("What is two plus two ?", " Two plus two is four ."),
    ("Which gas do plants absorb ?", " Plants absorb carbon dioxide from the air ."),
    ("Who wrote the contract law ?", " The court ruled that the contract was void ."),
]


class RecordPerStep(TrainerCallback):
    def __init__(self, trainer):
        self.trainer, self.values, self.ema, self.start_state = trainer, [], [], None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_state = self.trainer.balancer.state_dict()

    def on_step_end(self, args, state, control, **kwargs):
        self.values.append(self.trainer.balancer.lam)
        self.ema.append(self.trainer.balancer.state_dict())


def main(output_dir: str, options: dict) -> None:
    rank = int(os.environ["RANK"])
    dataset = Dataset.from_dict({"prompt": [p for p, _ in ROWS * 4], "completion": [c for _, c in ROWS * 4]})
    tokenizer = build_tokenizer()
    # The model as users give it: a folder (in eval mode until the first training step), the teacher reloaded from it.
    # Under ZeRO-3 from torchrun, `from_pretrained` in `zero.Init` sees a world size of 1 and DeepSpeed refuses the
    # batch sizes, so ZeRO-3 runs build the model in code here; `raft train --accelerate_config zero3` loads a folder
    # under ZeRO-3 in tests/test_recipes.py.
    if options.get("model_in_code"):
        model, teacher = build_model(tokenizer), None if options.get("lora") else build_model(tokenizer)
    else:
        model, teacher = os.path.join(output_dir, f"model-rank{rank}"), None
        build_model(tokenizer).save_pretrained(model)
        tokenizer.save_pretrained(model)
    args = RAFTConfig(
        output_dir=output_dir, max_steps=options.get("max_steps", 3), per_device_train_batch_size=2,
        gradient_accumulation_steps=2, logging_steps=1, report_to=[], use_cpu=True, bf16=False,
        max_completion_length=6, distillation_topk=16, seed=0, deepspeed=options.get("deepspeed"),
        # small LM-head chunks: the ranks' chunk counts differ, which must not desynchronise ZeRO-3's gathers
        distillation_chunk_size=options.get("chunk_size", 256),
        ds3_gather_for_generation=options.get("gather_for_generation", True),
        save_strategy="steps" if options.get("save_steps") else "no", save_steps=options.get("save_steps") or 500,
    )  # fmt: skip
    peft_config = None
    if options.get("lora"):
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = RAFTTrainer(model, args=args, train_dataset=dataset, processing_class=tokenizer, teacher_model=teacher,
                          peft_config=peft_config)  # fmt: skip
    if options.get("empty_rank") == rank:  # this rank's rollouts end at once: EOS is (all but) certain first
        trainer.rollout_generation_config.sequence_bias = {(tokenizer.eos_token_id,): 100.0}
    lengths = []  # this rank's rollout lengths per micro-batch
    sample = trainer._sample_rollouts

    def recording_sample(*a, **k):
        rollouts = sample(*a, **k)
        lengths.append(rollouts.lengths.tolist())
        return rollouts

    trainer._sample_rollouts = recording_sample
    if options.get("monitor"):
        from raft_trainer.eval import ForgettingMonitorCallback

        trainer.add_callback(ForgettingMonitorCallback(trainer, every_n_steps=1, num_probes=2))
    recorder = RecordPerStep(trainer)
    trainer.add_callback(recorder)
    trainer.train(resume_from_checkpoint=options.get("resume_from_checkpoint"))
    history = trainer.state.log_history
    weights = None  # replicated weights (DDP, ZeRO-2) must be the same on every rank after training
    if not (options.get("deepspeed") and trainer.is_deepspeed_enabled and trainer._zero3):
        import hashlib

        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        digest = hashlib.sha256()
        for name, parameter in sorted(unwrapped.named_parameters()):
            digest.update(name.encode() + parameter.detach().float().cpu().numpy().tobytes())
        weights = digest.hexdigest()
    with open(os.path.join(output_dir, f"rank{rank}.json"), "w") as f:
        json.dump({
            "lambda": recorder.values, "ema": recorder.ema, "start_state": recorder.start_state,
            "loss": [log["loss"] for log in history if "loss" in log],
            "logged_lambda": [log["raft/lambda"] for log in history if "raft/lambda" in log],
            "rollout_lengths": lengths, "monitor": [log for log in history if "forgetting/probe_accuracy" in log],
            "weights": weights,
        }, f)  # fmt: skip
    from raft_trainer.cli.train import end_run

    end_run(trainer)  # no abort at interpreter exit (see its docstring)


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
