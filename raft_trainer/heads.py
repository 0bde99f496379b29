"""Run a loss head on a causal LM's last hidden states *inside* the model's own forward.

`model(..., raft_head=fn)` runs the backbone and returns `fn(hidden_states, lm_head)`, without building the full
logits. Going through the model's forward keeps DDP's and DeepSpeed's hooks armed, so the wrapped model (engine, DDP,
PEFT) can be called as usual; `fn` projects through the `lm_head` module in chunks, so ZeRO-3 gathers its weight.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable

from .losses import LMHead


def lm_head_of(model) -> LMHead:
    """The model's output projection with the scale and soft-cap its config declares."""
    config = model.config.get_text_config()
    scale = getattr(config, "logit_scale", None)
    return LMHead(
        project=model.get_output_embeddings(),
        logit_scale=1.0 if scale is None else float(scale),
        softcap=getattr(config, "final_logit_softcapping", None),
    )


def add_raft_head(model) -> None:
    """Patch `model.forward` (a `PreTrainedModel`, not a PEFT wrapper) to accept `raft_head`. Idempotent."""
    if getattr(model, "_raft_head_added", False):
        return
    original_forward = model.forward

    @functools.wraps(type(model).forward)  # keep the signature: `generate` validates model kwargs against it
    def forward(self, *args, raft_head: Callable | None = None, **kwargs):
        if raft_head is None:
            return original_forward(*args, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        return raft_head(hidden, lm_head_of(self))

    model.forward = types.MethodType(forward, model)
    model._raft_head_added = True
