"""The last hidden states of a causal LM from its own forward, for RAFT's chunked LM-head projections.

`model(..., return_last_hidden_state=True)` runs the backbone and returns its last hidden states `(B, L, H)` without
projecting them through the LM head, so the full `(B, L, V)` logits are never built; `losses` then projects the
positions it needs through `lm_head_of(model)` in chunks. Calling the (DDP/DeepSpeed/PEFT-wrapped) model as usual
keeps the wrappers' forward hooks armed; the LM-head module is called by `losses`, so ZeRO-3 gathers its weight then.
"""

from __future__ import annotations

import functools
import types

from .losses import LMHead


def lm_head_of(model) -> LMHead:
    """The model's output projection with the scale and soft-cap its config declares (a `PreTrainedModel` or a PEFT
    model around one)."""
    config = model.config.get_text_config()
    scale = getattr(config, "logit_scale", None)
    return LMHead(
        project=model.get_output_embeddings(),
        logit_scale=1.0 if scale is None else float(scale),
        softcap=getattr(config, "final_logit_softcapping", None),
    )


def add_hidden_states_output(model) -> None:
    """Patch `model.forward` (a `PreTrainedModel`, not a PEFT wrapper) to accept `return_last_hidden_state=True`,
    which returns the backbone's last hidden states `(B, L, H)` (after the final norm) instead of the model output.
    Idempotent; without the flag the forward is unchanged."""
    if getattr(model, "_returns_last_hidden_state", False):
        return
    original_forward = model.forward

    @functools.wraps(type(model).forward)  # keep the signature: `generate` validates model kwargs against it
    def forward(self, *args, return_last_hidden_state: bool = False, **kwargs):
        if not return_last_hidden_state:
            return original_forward(*args, **kwargs)
        kwargs["use_cache"] = False
        return self.base_model(*args, **kwargs).last_hidden_state

    model.forward = types.MethodType(forward, model)
    model._returns_last_hidden_state = True
