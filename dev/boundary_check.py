"""What the teacher does at the first answer position, inside one real RAFT step (docs/raft_trainer.md, "Checking the
boundary"). Prints, over the step's rollouts: the teacher's top-1 token at completion position 0, its probability
mass on digit tokens there, the KL at position 0 against the mean KL, and how many rollouts ran to the length cap.

    python dev/boundary_check.py                      # the embedded Gemma 3 270M, bundled plain prompts ("…Answer:")
    python dev/boundary_check.py --model PATH --dataset FILE.jsonl --batch_size 8 --max_completion_length 32

It patches two functions of `raft_trainer.trainer` to watch their inputs, so it also runs against older versions of
the package (that is how the numbers before the boundary fix were taken).
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model name or path (default: the embedded Gemma 3 270M)")
    parser.add_argument("--dataset", default=None, help="prompt/completion JSONL (default: the bundled example)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_completion_length", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import raft_trainer.trainer as trainer_module
    from raft_trainer import RAFTConfig, RAFTTrainer
    from raft_trainer.data import load_data
    from raft_trainer.default_model import default_model_path
    from raft_trainer.losses import topk_forward_kl_per_token

    seen = collections.defaultdict(list)

    def watch(owner, name: str, key: str, keyword_only: bool = False) -> None:
        """Record what `owner.name` returns (or, for the KL, what it is given) under `seen[key]`."""
        original = getattr(owner, name)

        def watched(*args, **kwargs):
            result = original(*args, **kwargs)
            seen[key].append((*args, kwargs["temperature"]) if keyword_only else result)
            return result

        setattr(owner, name, watched)

    # the per-token KL function of this version of the package (older versions only had the per-sequence one)
    kl_name = (
        "topk_forward_kl_per_token" if hasattr(trainer_module, "topk_forward_kl_per_token") else "topk_forward_kl"
    )
    watch(trainer_module, kl_name, "kl", keyword_only=True)
    watch(trainer_module.RAFTTrainer, "_teacher_topk", "teacher")
    watch(trainer_module.RAFTTrainer, "_sample_rollouts", "rollouts")

    config = RAFTConfig(
        output_dir=tempfile.mkdtemp(), max_steps=1, per_device_train_batch_size=args.batch_size, learning_rate=1e-9,
        max_completion_length=args.max_completion_length, report_to=[], save_strategy="no", seed=args.seed,
        logging_steps=1,
    )  # fmt: skip
    model = args.model or default_model_path()
    trainer = RAFTTrainer(model, args=config, train_dataset=load_data(args.dataset))
    trainer.train()

    tokenizer = trainer.processing_class
    student_logits, teacher_logprobs, mask, temperature = seen["kl"][-1]
    teacher, rollouts = seen["teacher"][-1], seen["rollouts"][-1]
    per_token = topk_forward_kl_per_token(student_logits, teacher_logprobs, mask, temperature=temperature)
    first = teacher.indices[:, 0]  # (N, K) ids at completion position 0
    q_first = teacher.logprobs[:, 0].float().exp()
    digits = torch.tensor([[tokenizer.decode([i]).strip().isdigit() for i in row] for row in first.tolist()])
    eos = set(trainer.eos_token_ids)
    clipped = [not (set(r[m.bool()].tolist()) & eos) and int(m.sum()) == rollouts.completion_ids.size(1)
               for r, m in zip(rollouts.completion_ids, rollouts.completion_mask)]  # fmt: skip
    report = {
        "teacher_top1_at_position_0": [tokenizer.decode([row[0]]) for row in first.tolist()],
        "teacher_digit_mass_at_position_0": round(float((q_first * digits).sum(-1).mean()), 4),
        "kl_at_position_0": round(float(per_token[:, 0].mean()), 4),
        "kl_mean_per_token": round(float(per_token[mask.bool()].mean()), 4),
        "share_of_kl_at_position_0": round(float(per_token[:, 0].sum() / per_token.sum()), 4),
        "rollouts_clipped": f"{sum(clipped)} of {len(clipped)}",
        "mean_rollout_length": round(float(rollouts.completion_mask.sum(-1).float().mean()), 2),
        "first_rollout": tokenizer.decode(rollouts.completion_ids[0][rollouts.completion_mask[0].bool()]),
        "teacher_prompt_end": repr(tokenizer.decode(trainer.train_dataset[0]["teacher_prompt_ids"][-12:])),
    }
    print(json.dumps(report, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
