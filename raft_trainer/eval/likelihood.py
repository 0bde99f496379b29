"""Teacher-forced metrics on general text: perplexity, and drift = mean KL(original ‖ checkpoint) over next-token
distributions. Both need local weights; both are cheap (one forward per text per model)."""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F


def masked_mean_kl(reference_logits: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over masked positions of KL(softmax(reference) ‖ softmax(logits)), in float32.

    Args:
        reference_logits, logits (`torch.Tensor`): `(B, L, V)`.
        mask (`torch.Tensor`): `(B, L)`, 1 where a position counts.
    Returns: a scalar tensor; 0 when the two are equal.
    """
    ref = F.log_softmax(reference_logits.float(), dim=-1)
    cur = F.log_softmax(logits.float(), dim=-1)
    kl = (ref.exp() * (ref - cur)).sum(-1)  # (B, L)
    mask = mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def _batches(tokenizer, texts: list[str], max_length: int, batch_size: int, device):
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_length,
        )
        yield {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}


@contextlib.contextmanager
def padding_side(tokenizer, side: str | None = None):
    """Pad on `side` inside the block (unchanged when `None`) and restore the tokenizer's own side afterwards."""
    saved = tokenizer.padding_side
    tokenizer.padding_side = side or saved
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side = saved


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], *, max_length: int = 256, batch_size: int = 4) -> float:
    """exp(mean token NLL) over all predicted tokens of `texts` (each cut to `max_length` tokens)."""
    total_nll, total_tokens = 0.0, 0
    with padding_side(tokenizer, "right"):
        for batch in _batches(tokenizer, texts, max_length, batch_size, model.device):
            logits = model(**batch).logits[:, :-1]
            targets = batch["input_ids"][:, 1:]
            mask = batch["attention_mask"][:, 1:].bool()
            nll = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
            total_nll += nll[mask].sum().item()
            total_tokens += int(mask.sum())
    return math.exp(total_nll / max(total_tokens, 1))


@torch.no_grad()
def drift_kl(model, reference, tokenizer, texts: list[str], *, max_length: int = 256, batch_size: int = 4) -> float:
    """Mean per-token KL(reference ‖ model) on `texts`. `reference=None` with a PEFT model: the adapter-disabled base."""
    total, count = 0.0, 0
    with padding_side(tokenizer, "right"):
        for batch in _batches(tokenizer, texts, max_length, batch_size, model.device):
            if reference is None:
                with model.disable_adapter():
                    reference_logits = model(**batch).logits
            else:
                reference_logits = reference(**batch).logits
            tokens = int(batch["attention_mask"].sum())
            total += masked_mean_kl(reference_logits, model(**batch).logits, batch["attention_mask"]).item() * tokens
            count += tokens
    return total / max(count, 1)


@contextlib.contextmanager
def eval_mode(*models):
    """Put models in eval mode and restore their training flags afterwards."""
    flags = [(m, m.training) for m in models if m is not None]
    for m, _ in flags:
        m.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.train(training)
