"""Two CPU processes (gloo): every rank uses the same λ at every step, under DDP and DeepSpeed ZeRO-3."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(900)]
SCRIPT = Path(__file__).with_name("distributed_run.py")


def launch(tmp_path, deepspeed_stage=None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT),
            str(tmp_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if deepspeed_stage is not None:
        config = tmp_path / "ds.json"
        config.write_text(json.dumps({
            "zero_optimization": {"stage": deepspeed_stage}, "bf16": {"enabled": False}, "gradient_clipping": "auto",
            "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto", "train_batch_size": "auto",
        }))  # fmt: skip
        args.append(str(config))
        env["DS_ACCELERATOR"] = "cpu"
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]


def test_lambda_is_identical_on_every_rank_under_ddp(tmp_path):
    rank0, rank1 = launch(tmp_path)
    assert len(rank0["lambda"]) == 3 and rank0["lambda"] == rank1["lambda"]
    assert all(math.isfinite(x) for x in rank0["loss"])


def test_zero3_trains_like_ddp_with_identical_lambda_on_every_rank(tmp_path):
    ddp, _ = launch(tmp_path / "ddp")
    rank0, rank1 = launch(tmp_path / "zero3", deepspeed_stage=3)
    assert rank0["lambda"] == rank1["lambda"]
    # Same data, seed and rollouts: ZeRO-3 (sharded weights, LM head gathered by its module hooks) matches DDP.
    assert rank0["loss"] == pytest.approx(ddp["loss"], rel=1e-4)
    assert rank0["lambda"] == pytest.approx(ddp["lambda"], rel=1e-4)
