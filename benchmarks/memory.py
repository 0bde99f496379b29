"""Peak-memory and timing helpers shared by the benchmarks (CPU: resident set size; GPU: max allocated)."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def current_rss_mb() -> float:
    """Resident set size of this process now, in MiB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Highest resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: max allocated on a GPU, peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


def reset_peak(device: torch.device) -> float:
    """Start a peak measurement; returns the baseline to subtract (CPU peaks can only be measured from process start,
    so each measured configuration runs in its own process)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    return current_rss_mb()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def timed(device: torch.device, times: list[float]):
    """Append the wall time of the block (GPU work included) to `times`."""
    synchronize(device)
    start = time.perf_counter()
    yield
    synchronize(device)
    times.append(time.perf_counter() - start)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run_isolated(module: str, args: list[str], timeout: int = 1800) -> dict:
    """Run `python -m module *args` in a fresh process (clean peak memory) and return the JSON it prints last."""
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout,
                         cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
