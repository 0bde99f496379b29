"""λ, the weight of the distillation term (L = L_SFT + λ·L_KL), and all of its bookkeeping.

`EMALossBalancer` is the paper's rule: λ = m̂_SFT / (m̂_KL + ε) from bias-corrected EMAs of the two losses, updated
once per optimizer step. `RAFTLossBalancer` is what `RAFTTrainer` holds: that rule plus the first-step λ, the
accumulation window's totals, their reduction over ranks, non-finite micro-batches kept out, and its checkpoint state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

# A distillation loss below this share of the SFT loss is numerically zero: the student still is the teacher (plain
# on-policy distillation from the original model starts there), so the KL has no gradient to balance. Such a step
# does not enter the EMAs; otherwise its ~1e-8 KL would make the next steps' λ ~1e8.
ZERO_KL_SHARE = 1e-6


def ema_lambda(ema_sft: float, ema_kl: float, step: int, *, beta: float, eps: float) -> float:
    """λ from raw EMAs after `step` updates: `(m_SFT / (1 − βˢ)) / (m_KL / (1 − βˢ) + ε)`."""
    correction = 1.0 - beta**step
    return (ema_sft / correction) / (ema_kl / correction + eps)


def is_zero_kl(sft_loss: float, kl_loss: float) -> bool:
    """The distillation loss is numerically zero next to the SFT loss (`ZERO_KL_SHARE`)."""
    return kl_loss <= ZERO_KL_SHARE * abs(sft_loss)


class EMALossBalancer:
    """Tracks m_k ← β·m_k + (1−β)·L_k for k ∈ {SFT, KL} and returns λ as a plain float (it carries no gradient).

    Args:
        beta (`float`, defaults to `0.9`): EMA decay β.
        eps (`float`, defaults to `1e-8`): ε in the denominator.
        mode (`str`, defaults to `"ema"`): `"ema"` for the adaptive λ, `"fixed"` for a constant `fixed_lambda`.
        fixed_lambda (`float`, defaults to `1.0`): λ when `mode="fixed"`.

    Example:
    ```python
    >>> balancer = EMALossBalancer(beta=0.9)
    >>> balancer.update(2.0, 0.5)
    True
    >>> round(balancer.lam, 6)  # the first bias-corrected EMAs are the losses themselves
    4.0

    ```
    """

    def __init__(
        self, beta: float = 0.9, eps: float = 1e-8, mode: Literal["ema", "fixed"] = "ema", fixed_lambda: float = 1.0
    ):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"EMA beta must be in [0, 1), got {beta}.")
        if mode not in ("ema", "fixed"):
            raise ValueError(f"Loss balancing mode must be 'ema' or 'fixed', got {mode!r}.")
        self.beta, self.eps, self.mode, self.fixed_lambda = beta, eps, mode, fixed_lambda
        self.step, self.ema_sft, self.ema_kl = 0, 0.0, 0.0

    def update(self, sft_loss: float, kl_loss: float) -> bool:
        """One EMA step. Non-finite losses, and a numerically zero KL (`kl_loss ≤ 1e-6 · sft_loss`: nothing to
        balance yet), are skipped (returns `False`), so one such step cannot poison λ."""
        if not (math.isfinite(sft_loss) and math.isfinite(kl_loss)) or is_zero_kl(sft_loss, kl_loss):
            return False
        self.step += 1
        self.ema_sft = self.beta * self.ema_sft + (1.0 - self.beta) * sft_loss
        self.ema_kl = self.beta * self.ema_kl + (1.0 - self.beta) * kl_loss
        return True

    @property
    def lam(self) -> float | None:
        """Current λ, or `None` in `"ema"` mode before the first update."""
        if self.mode == "fixed":
            return self.fixed_lambda
        if self.step == 0:
            return None
        return ema_lambda(self.ema_sft, self.ema_kl, self.step, beta=self.beta, eps=self.eps)

    def lam_or_ratio(self, sft_loss: float, kl_loss: float) -> float:
        """λ, or before any update the ratio a first update with these losses would give: `L_SFT / (L_KL + ε)`; 0
        for a numerically zero KL (its gradient is zero too, so λ does not matter for the step, and an update would
        not happen)."""
        lam = self.lam
        if lam is not None:
            return lam
        return 0.0 if is_zero_kl(sft_loss, kl_loss) else sft_loss / (kl_loss + self.eps)

    @property
    def bias_corrected(self) -> tuple[float, float]:
        """`(m̂_SFT, m̂_KL)`; zeros before the first update."""
        if self.step == 0:
            return 0.0, 0.0
        correction = 1.0 - self.beta**self.step
        return self.ema_sft / correction, self.ema_kl / correction

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "ema_sft": self.ema_sft, "ema_kl": self.ema_kl}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.ema_sft, self.ema_kl = int(state["step"]), float(state["ema_sft"]), float(state["ema_kl"])


class RAFTLossBalancer(EMALossBalancer, TrainerCallback, ExportableState):
    """λ for `RAFTTrainer`: an [`EMALossBalancer`] that also owns the step's bookkeeping and its checkpoint state.

    The trainer calls it at two points of each optimizer step, and once before the first:
    - `first_window(totals)`: before the first update, λ from the whole first accumulation window over all ranks
      (`Σ NLL / SFT tokens` over `Σ KL / rollouts`, from a gradient-free pass), which is what the EMAs hold after
      their first update, so λ at step 1 does not depend on how the window is split into micro-batches;
    - `observe(sft_loss, kl_loss, window_share)`, per micro-batch: adds its losses (scaled to the window) to the
      window's totals, a non-finite micro-batch counted but left out, and returns λ for it: the same λ for every
      micro-batch and rank of an optimizer step (from the EMAs of the previous steps, else the first-window λ);
    - `end_step()`, when the optimizer step ends: the totals summed over ranks, the finite ones rescaled to the
      whole window, and the EMAs updated once (the same values on every rank).

    As a `TrainerCallback` its EMA state is written into every checkpoint's `trainer_state.json` and restored on
    resume (also from checkpoints that stored it under the earlier name `RAFTCallback`).

    Args:
        beta, eps, mode, fixed_lambda: as in [`EMALossBalancer`].
    """

    SAVED_NAMES = ("RAFTLossBalancer", "RAFTCallback")  # the state's key in `trainer_state.json`, then older keys

    def __init__(
        self, beta: float = 0.9, eps: float = 1e-8, mode: Literal["ema", "fixed"] = "ema", fixed_lambda: float = 1.0
    ):
        super().__init__(beta, eps, mode, fixed_lambda)
        self._window = torch.zeros(4, dtype=torch.float64)  # Σ SFT, Σ KL, finite micro-batches, micro-batches
        self._first_lambda: float | None = None
        self._reduce_sum: Callable[[torch.Tensor], torch.Tensor] = lambda totals: totals
        self._per_rank_means_over = 1
        self._device: torch.device | str | None = None
        self._restored = False

    def distribute(
        self,
        reduce_sum: Callable[[torch.Tensor], torch.Tensor],
        num_processes: int,
        counts_cover_all_ranks: bool,
        device: torch.device | str | None = None,
    ) -> None:
        """How ranks combine: `reduce_sum` sums a tensor (moved to `device`) over ranks (`accelerator.reduce(t,
        "sum")`). When the losses are normalised by this rank's counts only (`counts_cover_all_ranks=False`), the
        sum over ranks is divided by `num_processes` to give the ranks' mean."""
        self._reduce_sum = reduce_sum
        self._per_rank_means_over = 1 if counts_cover_all_ranks else num_processes
        self._device = device

    @property
    def needs_first_window(self) -> bool:
        """No λ yet (`"ema"` mode before the first update): `first_window` should be given the first window."""
        return self.lam is None

    def first_window(self, totals: torch.Tensor) -> None:
        """Set λ for the first step from this rank's `[Σ NLL, SFT tokens, Σ KL per rollout, rollouts]` over the
        window's finite micro-batches (float64, any device); 0 when the window has no SFT token or no rollout."""
        nll, tokens, kl, rollouts = self._reduce_sum(totals.to(self._device or totals.device)).tolist()
        self._first_lambda = 0.0 if tokens == 0 or rollouts == 0 else self.lam_or_ratio(nll / tokens, kl / rollouts)

    def observe(self, sft_loss: torch.Tensor, kl_loss: torch.Tensor, window_share: float = 1.0) -> float:
        """Record one micro-batch's `L_SFT` and `L_KL` (as used in its loss; `window_share` scales them to the
        window: `1 / accumulation steps` for micro-batch means, 1 for window-normalised losses) and return λ."""
        losses = torch.stack([sft_loss.detach(), kl_loss.detach()]).double().cpu()
        finite = bool(torch.isfinite(losses).all())
        contribution = losses * window_share if finite else torch.zeros(2, dtype=torch.float64)
        self._window += torch.tensor([*contribution.tolist(), float(finite), 1.0], dtype=torch.float64)
        if self.lam is not None:
            return self.lam
        if self._first_lambda is not None:
            return self._first_lambda
        ratio = self.lam_or_ratio(*losses.tolist())  # a direct compute_loss call: this micro-batch's ratio
        return ratio if math.isfinite(ratio) else 0.0

    def end_step(self) -> tuple[float, float]:
        """Close the optimizer step: update the EMAs once from the window's totals over all ranks (a step without a
        finite micro-batch leaves them untouched). Returns the bias-corrected `(m̂_SFT, m̂_KL)`."""
        totals = self._reduce_sum(self._window.to(self._device or "cpu")).tolist()
        self._window.zero_()
        sft, kl, finite, total = totals
        sft, kl = sft / self._per_rank_means_over, kl / self._per_rank_means_over
        if finite > 0:
            self.update(sft * total / finite, kl * total / finite)
        self._first_lambda = None
        return self.bias_corrected

    # ------------------------------------------------------------------------------ checkpoint state
    def state(self) -> dict:
        return {
            "args": {"beta": self.beta, "eps": self.eps, "mode": self.mode, "fixed_lambda": self.fixed_lambda},
            "attributes": {"balancer_state": self.state_dict()},
        }

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step == 0 or self._restored:
            return
        saved = next((state.stateful_callbacks[n] for n in self.SAVED_NAMES if n in state.stateful_callbacks), None)
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        if saved:
            self.load_state_dict(saved["attributes"]["balancer_state"])
            self._restored = True
