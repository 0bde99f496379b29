"""RAFT's top-K distillation loss against a dense full-vocabulary KL: time and peak memory of forward + backward.

    python -m benchmarks.loss                                  # Gemma 3 sizes: vocabulary 262,144, hidden 640
    python -m benchmarks.loss --tokens 512 2048 8192 --dense_max_tokens 2048 --json runs/bench/loss.json

Both losses start from the student's and the teacher's last hidden states for T completion tokens and include the
teacher's side (its LM-head projection and softmax), so they compare what a training step pays for the KL term:
- top-K (`raft_trainer.losses`): the teacher's top-K per position from LM-head chunks, the student's logits gathered
  at those ids chunk by chunk, T²·KL over the renormalised support;
- dense: full `(T, V)` teacher and student logits and T²·KL(softmax(u/T) ‖ softmax(v/T)) over the whole vocabulary.
The student head is frozen by default (the gradient flows into the hidden states, as with LoRA); `--train_head` also
computes its weight gradient (full fine-tuning). Each configuration runs in a fresh process, so the CPU peak resident
memory is its own; the peak is reported above the memory held before the loss (weights and hidden states).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from raft_trainer.losses import LMHead, gather_logits, teacher_topk, topk_forward_kl

from .memory import median, peak_memory_mb, reset_peak, run_isolated, timed


def dense_kl(student_hidden, teacher_hidden, student_head, teacher_head, temperature: float) -> torch.Tensor:
    """T² · mean over tokens of the full-vocabulary forward KL."""
    with torch.no_grad():
        teacher_logprobs = F.log_softmax(teacher_head(teacher_hidden).float() / temperature, dim=-1)
    student_logprobs = F.log_softmax(student_head(student_hidden).float() / temperature, dim=-1)
    token_kl = (teacher_logprobs.exp() * (teacher_logprobs - student_logprobs)).sum(-1)
    return temperature**2 * token_kl.mean()


def topk_kl(student_hidden, teacher_hidden, student_head, teacher_head, temperature, k, chunk_size) -> torch.Tensor:
    """RAFT's loss for one sequence of T tokens."""
    top = teacher_topk(teacher_hidden, LMHead(teacher_head), k=k, temperature=temperature, chunk_size=chunk_size)
    logits = gather_logits(student_hidden, LMHead(student_head), top.indices, chunk_size=chunk_size)
    mask = torch.ones(1, logits.size(0), device=logits.device)
    return topk_forward_kl(logits[None], top.logprobs[None], mask, temperature=temperature).mean()


def measure_one(method: str, tokens: int, args) -> dict:
    """One configuration in this process: median time over `--repeats` after a warm-up, and the peak memory."""
    device = torch.device(args.device)
    torch.manual_seed(0)

    def head(requires_grad: bool) -> torch.nn.Linear:
        linear = torch.nn.Linear(args.hidden, args.vocab, bias=False, device=device)
        torch.nn.init.normal_(linear.weight, std=0.02)
        return linear.requires_grad_(requires_grad)

    student_head, teacher_head = head(args.train_head), head(False)
    student_hidden = torch.randn(tokens, args.hidden, device=device, requires_grad=True)
    teacher_hidden = torch.randn(tokens, args.hidden, device=device)
    if args.train_head:
        student_head.weight.grad = torch.zeros_like(student_head.weight)

    def step():
        if method == "dense":
            loss = dense_kl(student_hidden, teacher_hidden, student_head, teacher_head, args.temperature)
        else:
            loss = topk_kl(student_hidden, teacher_hidden, student_head, teacher_head, args.temperature, args.topk,
                           args.chunk_size)  # fmt: skip
        loss.backward()
        student_hidden.grad = None

    baseline = reset_peak(device)
    times: list[float] = []
    for _ in range(1 + args.repeats):
        with timed(device, times):
            step()
    return {"method": method, "tokens": tokens, "vocab": args.vocab, "hidden": args.hidden, "topk": args.topk,
            "train_head": args.train_head, "device": args.device, "median_s": median(times[1:]),
            "peak_mb": peak_memory_mb(device) - baseline}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[512, 2048], help="completion tokens T")
    parser.add_argument("--dense_max_tokens", type=int, default=2048, help="skip the dense KL above this (memory)")
    parser.add_argument("--vocab", type=int, default=262_144, help="V (Gemma 3: 262,144)")
    parser.add_argument("--hidden", type=int, default=640, help="hidden size (Gemma 3 270M: 640)")
    parser.add_argument("--topk", type=int, default=512)
    parser.add_argument("--chunk_size", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=1.5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train_head", action="store_true", help="also compute the student head's weight gradient")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "TOKENS"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one[0], int(args.one[1]), args)))
        return
    passthrough = [f"--{name}={getattr(args, name)}" for name in
                   ("vocab", "hidden", "topk", "chunk_size", "temperature", "repeats", "device")]  # fmt: skip
    passthrough += ["--train_head"] if args.train_head else []
    rows = []
    for tokens in args.tokens:
        for method in ("topk", "dense"):
            if method == "dense" and tokens > args.dense_max_tokens:
                continue
            rows.append(run_isolated("benchmarks.loss", ["--one", method, str(tokens), *passthrough]))
    print(format_table(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))


def format_table(rows: list[dict]) -> str:
    by_key = {(r["tokens"], r["method"]): r for r in rows}
    lines = ["| tokens T | top-K time (s) | dense time (s) | top-K peak (MiB) | dense peak (MiB) | top-K / dense memory |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for tokens in sorted({r["tokens"] for r in rows}):
        top, dense = by_key[(tokens, "topk")], by_key.get((tokens, "dense"))
        if dense is None:
            lines.append(f"| {tokens} | {top['median_s']:.3f} | — | {top['peak_mb']:.0f} | — | — |")
            continue
        lines.append(f"| {tokens} | {top['median_s']:.3f} | {dense['median_s']:.3f} | {top['peak_mb']:.0f} | "
                     f"{dense['peak_mb']:.0f} | {top['peak_mb'] / dense['peak_mb']:.3f} |")  # fmt: skip
    first = rows[0]
    head = "trained" if first["train_head"] else "frozen"
    return f"V = {first['vocab']}, hidden {first['hidden']}, K = {first['topk']}, {first['device']}, head {head}\n" + \
        "\n".join(lines)  # fmt: skip


if __name__ == "__main__":
    main()
