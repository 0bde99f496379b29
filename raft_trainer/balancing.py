"""EMA adaptive loss balancing: λ = m̂_SFT / (m̂_KL + ε) from bias-corrected EMAs of the two losses."""

from __future__ import annotations

import math
from typing import Any, Literal

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
