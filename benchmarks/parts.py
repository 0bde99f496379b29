"""Where a RAFT step's time goes: its parts timed inside real steps, and each part alone on a fixed batch.

Used by `benchmarks/trainers.py` in the RAFTTrainer run (same model, data and settings as the trainer comparison).
Parts: rollout generation, the teacher's top-K forward, the student's forward (SFT rows + rollout rows) and backward,
the optimizer step. Their sum is the floor a RAFT step should approach; the rest is the trainer's own overhead.
"""

from __future__ import annotations

import functools
import time

import torch
from transformers import TrainerCallback

from raft_trainer.losses import sequence_means
from raft_trainer.trainer import RAFT_BATCH_KEYS

from .memory import median, synchronize, timed

PARTS = ("generation", "teacher_forward", "student_forward", "backward", "optimizer")


class PartTimer(TrainerCallback):
    """Times each part inside the trainer's real steps by wrapping its methods."""

    def __init__(self, trainer, device: torch.device):
        self.device, self.parts = device, {name: [] for name in PARTS}
        self._step_parts: dict[str, float] = {}
        self._wrap(trainer, "_sample_rollouts", "generation")
        self._wrap(trainer, "_teacher_topk", "teacher_forward")
        self._wrap(trainer, "_student_losses", "student_forward")
        self._wrap(trainer.accelerator, "backward", "backward")

    def _wrap(self, owner, method: str, part: str) -> None:
        original = getattr(owner, method)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            synchronize(self.device)
            start = time.perf_counter()
            result = original(*args, **kwargs)
            synchronize(self.device)
            self._step_parts[part] = self._step_parts.get(part, 0.0) + time.perf_counter() - start
            return result

        setattr(owner, method, wrapper)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        synchronize(self.device)
        self._optimizer_start = time.perf_counter()

    def on_optimizer_step(self, args, state, control, **kwargs):
        synchronize(self.device)
        self._step_parts["optimizer"] = time.perf_counter() - self._optimizer_start

    def on_step_end(self, args, state, control, **kwargs):  # parts since the last step: rollouts come before it
        for name in PARTS:
            self.parts[name].append(self._step_parts.get(name, 0.0))
        self._step_parts = {}

    def summary(self, step_times: list[float], warmup: int) -> dict:
        """Median step (of `step_times`, timed by the caller) and per-part medians over the steps after `warmup`."""
        parts = {name: median(values[warmup:]) for name, values in self.parts.items()}
        step = median(step_times[warmup:])
        return {"step_s": step, "parts_s": parts, "other_s": step - sum(parts.values())}


def parts_alone(trainer, repeats: int) -> dict:
    """Each part on one fixed batch, outside the training loop: median seconds over `repeats` (after a warm-up)."""
    device = trainer.accelerator.device
    model = trainer.model_wrapped
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    raft_inputs = {key: inputs.pop(key) for key in RAFT_BATCH_KEYS if key in inputs}
    times = {"generation": [], "teacher_forward": [], "student_forward_backward": [], "optimizer": []}
    model.train()
    for _ in range(1 + repeats):
        with timed(device, times["generation"]):
            rollouts = trainer._sample_rollouts(model, raft_inputs["prompt_input_ids"],
                                                raft_inputs["prompt_attention_mask"])  # fmt: skip
        with timed(device, times["teacher_forward"]):
            teacher = trainer._teacher_topk(model, raft_inputs, rollouts)
        with timed(device, times["student_forward_backward"]):
            nll_sum, kl = trainer._student_losses(model, inputs, raft_inputs, rollouts, teacher)
            tokens = inputs["labels"][:, 1:].ne(-100).sum().clamp(min=1)
            (nll_sum / tokens + sequence_means(kl, rollouts.completion_mask).mean()).backward()
        with timed(device, times["optimizer"]):
            trainer.optimizer.step()
            trainer.optimizer.zero_grad()
    return {name: median(values[1:]) for name, values in times.items()}


def profile_step(trainer, top: int = 12) -> str:
    """torch.profiler table (self time, top ops) of one training step on a fixed batch."""
    from torch.profiler import ProfilerActivity, profile

    inputs = next(iter(trainer.get_train_dataloader()))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    with profile(activities=activities) as prof:
        trainer.training_step(trainer.model_wrapped, inputs)
    return prof.key_averages().table(sort_by=sort, row_limit=top, max_name_column_width=40)
