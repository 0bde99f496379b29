"""Every CPU benchmark in one command (about 8 minutes on a 2-core machine): trainers side by side and RAFT's parts on
the tiny model and on Gemma 3 270M, then the top-K loss against the dense KL at Gemma's 262k vocabulary.

    python -m benchmarks.run_all                      # writes runs/benchmarks/{*.json,report.md}
    python -m benchmarks.run_all --output_dir DIR --skip gemma

On a GPU machine, add the random-initialised real configurations: `python -m benchmarks.trainers --model
qwen2.5-1.5b --batch_size 8 --max_completion_length 128` (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "tiny": ["benchmarks.trainers", "--model", "tiny", "--steps", "8", "--warmup", "2"],
    "gemma": ["benchmarks.trainers", "--model", "gemma", "--steps", "3", "--warmup", "1", "--batch_size", "2",
              "--max_completion_length", "16", "--part_repeats", "2"],
    "loss": ["benchmarks.loss", "--tokens", "512", "2048", "--repeats", "1"],
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="runs/benchmarks")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(RUNS))
    args = parser.parse_args()
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    report, timings = [], {}
    for name, command in RUNS.items():
        if name in args.skip:
            continue
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", *command, "--json", str(output / f"{name}.json")], cwd=ROOT,
                             capture_output=True, text=True)  # fmt: skip
        if out.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{out.stderr[-4000:]}")
        timings[name] = round(time.perf_counter() - start, 1)
        report.append(f"## {name}: `python -m {' '.join(command)}` ({timings[name]} s)\n\n{out.stdout.strip()}\n")
        print(report[-1], flush=True)
    (output / "report.md").write_text("\n".join(report))
    (output / "timings.json").write_text(json.dumps(timings))
    print(f"Total {sum(timings.values()):.0f} s; report in {output / 'report.md'}")


if __name__ == "__main__":
    main()
