"""The benchmark scripts run end to end on small sizes and report what they claim (the figures themselves are in
docs/benchmarks.md, measured by `python -m benchmarks.run_all`; no timing is asserted here)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(900)


def run(module: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    out = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=800)  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout


def test_loss_benchmark_compares_topk_with_the_dense_kl(tmp_path):
    stdout = run("benchmarks.loss", "--vocab", "32768", "--hidden", "64", "--tokens", "1024", "4096",
                 "--dense_max_tokens", "1024", "--repeats", "1", "--json", str(tmp_path / "loss.json"))  # fmt: skip
    rows = {(r["method"], r["tokens"]): r for r in json.loads((tmp_path / "loss.json").read_text())}
    assert set(rows) == {("topk", 1024), ("dense", 1024), ("topk", 4096)}  # dense skipped above its limit
    # (1024, 32768) float32 logits are 128 MiB each; the dense KL holds several, top-K one 256-row chunk at a time.
    assert rows[("topk", 1024)]["peak_mb"] < rows[("dense", 1024)]["peak_mb"] / 3
    assert "| 1024 |" in stdout and "| 4096 |" in stdout


def test_trainer_benchmark_runs_all_four_trainers_and_raft_parts(tmp_path):
    stdout = run("benchmarks.trainers", "--steps", "1", "--warmup", "1", "--part_repeats", "1", "--batch_size", "2",
                 "--max_completion_length", "4", "--json", str(tmp_path / "trainers.json"))  # fmt: skip
    result = json.loads((tmp_path / "trainers.json").read_text())
    rows = {r["trainer"]: r for r in result["trainers"]}
    assert set(rows) == {"raft", "sft", "sdft", "distillation"}
    for row in rows.values():
        assert row["median_step_s"] > 0 and row["peak_memory_mb"] > 0 and len(row["step_times_s"]) == 2
    raft = rows["raft"]
    assert set(raft["alone"]) == {"generation", "teacher_forward", "student_forward_backward", "optimizer"}
    assert all(math.isfinite(v) and v > 0 for v in raft["alone"].values())
    assert raft["in_step"]["parts_s"]["generation"] > 0 and "aten::" in raft["profile"]
    assert "RAFT ÷ SDFT step" in stdout and "sum of parts alone" in stdout


def test_trainer_benchmark_reports_a_subset_of_trainers(tmp_path):
    """`--trainers` runs and reports only the trainers named (RAFT's parts included), with no SDFT or distillation."""
    options = "--trainers raft sft --steps 1 --warmup 1 --part_repeats 1 --batch_size 2 --max_completion_length 4"
    stdout = run("benchmarks.trainers", *options.split(), "--json", str(tmp_path / "trainers.json"))
    result = json.loads((tmp_path / "trainers.json").read_text())
    assert [r["trainer"] for r in result["trainers"]] == ["raft", "sft"]
    assert "| raft |" in stdout and "| sft |" in stdout and "step / RAFT" in stdout
    assert "sum of parts alone" in stdout and "Profile of one RAFT step" in stdout
    assert "sdft" not in stdout and "distillation |" not in stdout and "RAFT ÷ SDFT" not in stdout


def test_trainer_benchmark_report_without_raft_has_no_ratios(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.trainers import format_report

    row = {"median_step_s": 0.5, "peak_memory_mb": 900.0, "tokens_per_s": 100.0, "mean_completion_length": 4.0}
    result = {
        "model": "tiny",
        "batch_size": 2,
        "max_completion_length": 4,
        "topk": 8,
        "device": "cpu",
        "steps": 1,
        "warmup": 1,
        "trainers": [{**row, "trainer": "sdft"}, {**row, "trainer": "sft"}],
    }
    lines = format_report(result).splitlines()
    assert lines[1:] == [
        "| trainer | median step (s) | peak memory (MiB) | tokens/s | mean rollout |",
        "|---|---|---|---|---|",
        "| sft | 0.5000 | 900 | 100.0 | 4.0 |",
        "| sdft | 0.5000 | 900 | 100.0 | 4.0 |",
    ]
