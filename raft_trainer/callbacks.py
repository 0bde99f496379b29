"""RAFTCallback: carries the EMA balancer across checkpoints (exported in `trainer_state.json`, restored on resume)."""

from __future__ import annotations

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from .balancing import EMALossBalancer


class RAFTCallback(TrainerCallback, ExportableState):
    """Holds the [`EMALossBalancer`] whose λ and EMAs the trainer logs (`raft/lambda`, `raft/ema_sft`, `raft/ema_kl`).

    Its state is written into every checkpoint's `trainer_state.json` and restored when training resumes, whether or
    not `restore_callback_states_from_checkpoint` is set.

    Args:
        balancer (`EMALossBalancer`, *optional*): the balancer; built from the other arguments when omitted.
        beta, eps, mode, fixed_lambda: the balancer's settings (used when rebuilding from a checkpoint).
    """

    def __init__(
        self,
        balancer: EMALossBalancer | None = None,
        *,
        beta: float = 0.9,
        eps: float = 1e-8,
        mode: str = "ema",
        fixed_lambda: float = 1.0,
    ):
        self.balancer = balancer or EMALossBalancer(beta, eps, mode, fixed_lambda)
        self._restored = False

    @property
    def balancer_state(self) -> dict:
        return self.balancer.state_dict()

    @balancer_state.setter
    def balancer_state(self, state: dict) -> None:  # set by Trainer when it rebuilds callbacks from a checkpoint
        self.balancer.load_state_dict(state)
        self._restored = True

    def state(self) -> dict:
        b = self.balancer
        return {
            "args": {"beta": b.beta, "eps": b.eps, "mode": b.mode, "fixed_lambda": b.fixed_lambda},
            "attributes": {"balancer_state": self.balancer_state},
        }

    def on_train_begin(self, args, state, control, **kwargs):
        saved = state.stateful_callbacks.get(type(self).__name__) if state.global_step > 0 else None
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        if saved and not self._restored:
            self.balancer.load_state_dict(saved["attributes"]["balancer_state"])
            self._restored = True
