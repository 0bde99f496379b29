"""Two CPU processes (gloo; DeepSpeed with `DS_ACCELERATOR=cpu`): DDP, ZeRO-2 and ZeRO-3, full fine-tuning and LoRA,
DDP and ZeRO-2 from a model folder (the path a user takes: the model is in eval mode until the first training step).

Every run checks that training completes with finite losses and the same λ on both ranks at every step. ZeRO-3 runs
with `stage3_param_persistence_threshold: 0` and 4-row LM-head chunks, so every weight (the LM head included) is
gathered by a collective and the ranks' chunk counts differ: a rank that skipped or added a gather would fail the run
(gloo reports the collective mismatch; NCCL would hang, hence the timeouts).
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(900)]
SCRIPT = Path(__file__).with_name("distributed_run.py")


def deepspeed_config(path: Path, stage: int) -> str:
    zero = {"stage": stage, **({"stage3_param_persistence_threshold": 0} if stage == 3 else {})}
    path.write_text(json.dumps({
        "zero_optimization": zero, "bf16": {"enabled": False}, "gradient_clipping": "auto",
        "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto", "train_batch_size": "auto",
    }))  # fmt: skip
    return str(path)


def launch(tmp_path: Path, stage: int | None = None, **options) -> list[dict]:
    """Run tests/distributed_run.py on two processes; return each rank's record."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if stage is not None:
        options["deepspeed"] = deepspeed_config(tmp_path / f"zero{stage}.json", stage)
        env["DS_ACCELERATOR"] = "cpu"
        options["model_in_code"] = stage == 3  # see distributed_run.py
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT),
            str(tmp_path), json.dumps({"chunk_size": 4, **options})]  # fmt: skip
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    steps_run = options.get("max_steps", 3) - ranks[0]["start_state"]["step"]  # a resumed run starts later
    assert ranks[0]["lambda"] == ranks[1]["lambda"] and len(ranks[0]["lambda"]) == steps_run
    assert ranks[0]["logged_lambda"] == ranks[1]["logged_lambda"]  # the λ each rank used, step 1 included
    assert all(math.isfinite(x) for rank in ranks for x in rank["loss"] + rank["lambda"])
    assert ranks[0]["weights"] == ranks[1]["weights"]  # every gradient reduced (None under ZeRO-3: sharded)
    return ranks


def test_lambda_is_identical_on_every_rank_under_ddp(tmp_path):
    rank0, _ = launch(tmp_path)
    assert len(rank0["loss"]) == 3


def test_zero3_trains_like_ddp(tmp_path):
    ddp, _ = launch(tmp_path / "ddp")
    zero3, _ = launch(tmp_path / "zero3", stage=3)
    # Same data, seed and rollouts: ZeRO-3 (sharded weights, gathered by module hooks) matches DDP.
    assert zero3["loss"] == pytest.approx(ddp["loss"], rel=1e-4)
    assert zero3["lambda"] == pytest.approx(ddp["lambda"], rel=1e-4)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("stage", [2, 3])
def test_zero_stage_trains_and_resumes_with_the_same_ema_state(tmp_path, stage, lora):
    ranks = launch(tmp_path / "run", stage=stage, lora=lora, save_steps=2)
    checkpoint = tmp_path / "run" / "checkpoint-2"
    resumed = launch(tmp_path / "resumed", stage=stage, lora=lora, resume_from_checkpoint=str(checkpoint))
    for before, after in zip(ranks, resumed):
        assert after["start_state"] == before["ema"][1]  # the EMA state after step 2, on every rank
        assert after["start_state"]["step"] == 2
    # The resumed step 3 uses λ from the restored EMAs, so it equals the uninterrupted run's step-3 λ.
    assert resumed[0]["logged_lambda"][-1] == ranks[0]["logged_lambda"][2]


@pytest.mark.parametrize("gather", [True, False], ids=["gathered", "sharded"])
def test_a_rank_whose_rollouts_are_all_empty_finishes_under_zero3(tmp_path, gather):
    rank0, rank1 = launch(tmp_path, stage=3, lora=True, empty_rank=1, gather_for_generation=gather)
    assert all(length == 1 for lengths in rank1["rollout_lengths"] for length in lengths)  # EOS only
    assert any(length > 1 for lengths in rank0["rollout_lengths"] for length in lengths)


def test_forgetting_monitor_under_zero3(tmp_path):
    rank0, rank1 = launch(tmp_path, stage=3, monitor=True, max_steps=2)
    for rank in (rank0, rank1):
        assert [log["step"] for log in rank["monitor"]] == [1, 2]
        assert all(0 <= log["forgetting/probe_accuracy"] <= 1 and log["forgetting/drift_kl"] >= 0
                   for log in rank["monitor"])  # fmt: skip
