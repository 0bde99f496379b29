"""RAFT's loss math: chunked LM-head projection, the teacher's top-K, the renormalised top-K forward KL, token NLL.

Pure torch (no transformers / trl imports). No function here materialises `(rows, vocab)` float32 logits for more
than `chunk_size` rows at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


@dataclass
class LMHead:
    """The output projection `logits = softcap(scale · project(h))` of a causal LM.

    Args:
        project (`Callable`): `(N, H) -> (N, V)`, usually the model's `lm_head` module. Calling the module (rather
            than reading its weight) lets DeepSpeed ZeRO-3 gather the weight in forward and backward, and keeps a
            wrapped head (PEFT) in the computation.
        logit_scale (`float`, defaults to `1.0`): multiplier applied to the logits (e.g. Cohere, Granite).
        softcap (`float`, *optional*): final logit soft-capping `c · tanh(z / c)` (e.g. Gemma 2).
    """

    project: Callable[[torch.Tensor], torch.Tensor]
    logit_scale: float = 1.0
    softcap: float | None = None

    def raw(self, hidden: torch.Tensor) -> torch.Tensor:
        """The projection in float32: `(N, H) -> (N, V)`."""
        return self.project(hidden).float()

    def finish(self, logits: torch.Tensor) -> torch.Tensor:
        """Element-wise scale and soft-cap, so they can be applied after a gather."""
        if self.logit_scale != 1.0:
            logits = logits * self.logit_scale
        if self.softcap is not None:
            logits = self.softcap * torch.tanh(logits / self.softcap)
        return logits

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.finish(self.raw(hidden))


def row_chunks(rows: torch.Tensor, chunk_size: int, num_chunks: int | None = None) -> list[torch.Tensor]:
    """`rows` split along dim 0 into pieces of at most `chunk_size` rows, padded with empty pieces to `num_chunks`.

    A fixed `num_chunks` makes every rank call the LM head equally often whatever its own row count, which DeepSpeed
    ZeRO-3 needs: each call gathers the sharded head weight, a collective that all ranks must join.

    Example:
    ```python
    >>> [len(c) for c in row_chunks(torch.zeros(5, 2), chunk_size=2, num_chunks=4)]
    [2, 2, 1, 0]

    ```
    """
    pieces = list(rows.split(chunk_size)) if rows.size(0) else []
    if num_chunks is None:
        return pieces
    if len(pieces) > num_chunks:
        raise ValueError(f"{rows.size(0)} rows need {len(pieces)} chunks of {chunk_size}, more than {num_chunks}.")
    return pieces + [rows[:0]] * (num_chunks - len(pieces))


def num_row_chunks(num_rows: int, chunk_size: int) -> int:
    """How many chunks of `chunk_size` rows `num_rows` rows need."""
    return -(-num_rows // chunk_size)


@dataclass
class TeacherTopK:
    """The teacher's top-K support per position.

    Attributes:
        indices (`torch.LongTensor`): `(N, K)` token ids of the teacher's top-K tokens.
        logprobs (`torch.Tensor`): `(N, K)` float32 log q̃, the tempered teacher distribution renormalised over S.
        mass (`torch.Tensor`): `(N,)` float32 teacher probability mass inside S before renormalisation.
    """

    indices: torch.Tensor
    logprobs: torch.Tensor
    mass: torch.Tensor


@torch.no_grad()
def teacher_topk(
    hidden: torch.Tensor,
    head: LMHead,
    *,
    k: int,
    temperature: float,
    chunk_size: int = 256,
    num_chunks: int | None = None,
) -> TeacherTopK:
    """Top-K of q = softmax(u / T) per row, projected `chunk_size` rows at a time.

    Args:
        hidden (`torch.Tensor`): `(N, H)` teacher hidden states at the positions that predict the completion.
        head (`LMHead`): the teacher's output projection.
        k (`int`): support size K (clipped to the vocabulary size).
        temperature (`float`): distillation temperature T.
        chunk_size (`int`): rows projected at once; peak extra memory is `chunk_size · V · 4` bytes.
        num_chunks (`int`, *optional*): call the head exactly this often (see `row_chunks`).

    Returns:
        `TeacherTopK` with `(N, K)` indices and renormalised log-probs and the `(N,)` mass inside the top-K.
    """
    indices, logprobs, mass = [], [], []
    for rows in row_chunks(hidden, chunk_size, num_chunks):
        scaled = head(rows) / temperature  # (R, V) float32
        top_values, top_indices = scaled.topk(min(k, scaled.size(-1)), dim=-1)
        top_lse = top_values.logsumexp(-1, keepdim=True)
        indices.append(top_indices)
        logprobs.append(top_values - top_lse)
        mass.append((top_lse.squeeze(-1) - scaled.logsumexp(-1)).exp())
    return TeacherTopK(torch.cat(indices), torch.cat(logprobs), torch.cat(mass))


def topk_forward_kl_per_token(
    student_logits: torch.Tensor, teacher_logprobs: torch.Tensor, mask: torch.Tensor, *, temperature: float
) -> torch.Tensor:
    """`T² · KL(q̃_t ‖ p̃_t)` at every position, with p̃ = softmax(v_S / T) renormalised over the teacher's top-K S.

    Args:
        student_logits (`torch.Tensor`): `(B, C, K)` student logits v at the teacher's top-K ids (un-tempered).
        teacher_logprobs (`torch.Tensor`): `(B, C, K)` log q̃ (tempered and renormalised over S).
        mask (`torch.Tensor`): `(B, C)` 1 on completion tokens, 0 on padding.
        temperature (`float`): distillation temperature T.

    Returns:
        `(B, C)` float32, exactly 0 where `mask` is 0. Positions are masked *before* anything is reduced, so
        non-finite logits at padding give a finite loss and gradient. A top-K entry with q̃ = 0 (a `-inf` teacher
        logit, e.g. a suppressed token when fewer than K tokens are allowed) is left out of S, for p̃ as for q̃: it
        contributes 0 (the limit of q·log q), not `0 · ∞ = NaN`.
    """
    valid = mask.bool()[..., None]
    teacher_logprobs = teacher_logprobs.float().masked_fill(~valid, 0.0)
    # Top-K entries with q̃ = 0 (-inf teacher logits) are not in S; NaN stays in, so that it surfaces.
    support = teacher_logprobs != float("-inf")
    student_logits = student_logits.float().masked_fill(~valid, 0.0).masked_fill(~support, float("-inf"))
    student_logprobs = F.log_softmax(student_logits / temperature, dim=-1)
    terms = torch.where(support, teacher_logprobs.exp() * (teacher_logprobs - student_logprobs), 0.0)
    return temperature**2 * terms.sum(-1) * valid.squeeze(-1)


def sequence_means(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`(B, C), (B, C) -> (B,)` mean of `values` over each row's unmasked positions; 0 for a row without any.

    Example:
    ```python
    >>> sequence_means(torch.tensor([[1.0, 3.0], [2.0, 9.0], [5.0, 5.0]]), torch.tensor([[1, 1], [1, 0], [0, 0]]))
    tensor([2., 2., 0.])

    ```
    """
    mask = mask.to(values.dtype)
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def topk_forward_kl(
    student_logits: torch.Tensor, teacher_logprobs: torch.Tensor, mask: torch.Tensor, *, temperature: float
) -> torch.Tensor:
    """Per-sequence top-K forward KL, `T² · mean_t KL(q̃_t ‖ p̃_t)` (the paper's L_KL before the mean over sequences).

    Same arguments as `topk_forward_kl_per_token`. Returns `(B,)` float32; a sequence without tokens gives 0 (and a
    connected zero gradient). The caller averages over sequences; this function never divides by a batch size.
    """
    return sequence_means(
        topk_forward_kl_per_token(student_logits, teacher_logprobs, mask, temperature=temperature), mask
    )


def _nll_and_gather(rows, labels, indices, num_labelled: int, head: LMHead):
    """One chunk whose first `num_labelled` rows are labelled: (Σ NLL of those, raw logits of the others at `indices`)."""
    raw = head.raw(rows)  # (R, V) float32
    nll = F.cross_entropy(head.finish(raw[:num_labelled]), labels[:num_labelled], reduction="sum")
    return nll, raw[num_labelled:].gather(-1, indices[num_labelled:])


def nll_and_topk_logits(
    sft_hidden: torch.Tensor,
    labels: torch.Tensor,
    rollout_hidden: torch.Tensor,
    indices: torch.Tensor,
    head: LMHead,
    *,
    chunk_size: int = 256,
    num_chunks: int | None = None,
    recompute: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both of RAFT's student terms from one chunked LM-head pass.

    Args:
        sft_hidden (`torch.Tensor`): `(N, H)` hidden states of the SFT rows; `labels` `(N,)`, -100 where ignored.
        rollout_hidden (`torch.Tensor`): `(M, H)` hidden states at the rollout positions; `indices` `(M, K)` the
            teacher's top-K ids there.
        head (`LMHead`): the student's output projection.
        chunk_size, num_chunks: rows projected at once, and a fixed chunk count (see `row_chunks`).
        recompute (`bool`): checkpoint each chunk, so its `(R, V)` logits are recomputed in backward, not kept.

    Returns:
        `(Σ −log p(label), (M, K) student logits at the teacher's top-K ids)`, float32, differentiable.

    The labelled SFT rows come first and the rollout rows after them, so a chunk's projection serves both terms: the
    head's weight gets one gradient per chunk instead of one per term and chunk (each is `V × H`, 671 MB at Gemma 3's
    262k tokens × 640).
    """
    keep = labels != -100
    sft_hidden, labels = sft_hidden[keep], labels[keep]
    rows = torch.cat([sft_hidden, rollout_hidden.to(sft_hidden.dtype)])
    all_labels = torch.cat([labels, labels.new_full((rollout_hidden.size(0),), -100)])
    all_indices = torch.cat([indices.new_zeros((sft_hidden.size(0), indices.size(-1))), indices])
    nll = rows.new_zeros((), dtype=torch.float32) + 0.0 * rows.sum()  # connected zero for empty batches
    gathered, offset = [], 0
    for chunk in zip(*(row_chunks(t, chunk_size, num_chunks) for t in (rows, all_labels, all_indices))):
        num_labelled = min(len(chunk[0]), max(0, sft_hidden.size(0) - offset))  # from shapes: no device sync
        offset += len(chunk[0])
        if recompute:
            chunk_nll, chunk_logits = checkpoint(_nll_and_gather, *chunk, num_labelled, head, use_reentrant=False)
        else:
            chunk_nll, chunk_logits = _nll_and_gather(*chunk, num_labelled, head)
        nll = nll + chunk_nll
        gathered.append(chunk_logits)
    logits = torch.cat(gathered) if gathered else rows.new_zeros((0, indices.size(-1)), dtype=torch.float32)
    return nll, head.finish(logits)


def token_nll_sum(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    head: LMHead,
    *,
    chunk_size: int = 256,
    num_chunks: int | None = None,
    recompute: bool = True,
) -> torch.Tensor:
    """Σ −log p(label) over rows whose label is not -100, `(N, H), (N,) -> ()` float32 (`nll_and_topk_logits`
    without rollout rows)."""
    no_rollouts = hidden[:0]
    nll, _ = nll_and_topk_logits(
        hidden,
        labels,
        no_rollouts,
        labels.new_zeros((0, 1)),
        head,
        chunk_size=chunk_size,
        num_chunks=num_chunks,
        recompute=recompute,
    )
    return nll


def gather_logits(
    hidden: torch.Tensor, head: LMHead, indices: torch.Tensor, *, chunk_size: int = 256, num_chunks: int | None = None
) -> torch.Tensor:
    """Student logits at the teacher's top-K ids, `(N, H), (N, K) -> (N, K)`, differentiable (`nll_and_topk_logits`
    without SFT rows). Chunks are recomputed in backward: a plain `gather` would keep each chunk's `(R, V)` logits
    for its backward, i.e. all `N · V` of them."""
    no_labels = indices.new_zeros((0,))
    _, logits = nll_and_topk_logits(
        hidden[:0], no_labels, hidden, indices, head, chunk_size=chunk_size, num_chunks=num_chunks
    )
    return logits


def student_losses(
    sft_hidden: torch.Tensor,
    sft_labels: torch.Tensor,
    rollout_hidden: torch.Tensor,
    completion_mask: torch.Tensor,
    teacher: TeacherTopK,
    head: LMHead,
    *,
    temperature: float,
    chunk_size: int,
    num_chunks: int | None = None,
    recompute: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both of RAFT's terms from the student's hidden states, with one chunked pass through the LM head.

    Args:
        sft_hidden (`torch.Tensor`): `(M, H)` hidden states that predict the SFT targets (position t predicts t+1).
        sft_labels (`torch.Tensor`): `(M,)` target ids, `-100` where not trained on.
        rollout_hidden (`torch.Tensor`): `(N, C, H)` hidden states that predict each rollout token z_c.
        completion_mask (`torch.Tensor`): `(N, C)` 1 on rollout tokens, 0 on padding.
        teacher (`TeacherTopK`): the teacher's top-K ids `(N, C, K)` and log q̃ `(N, C, K)`.
        head (`LMHead`): the student's output projection.
        temperature, chunk_size, num_chunks, recompute: as in `topk_forward_kl_per_token` and `nll_and_topk_logits`.

    Returns:
        `(nll_sum, kl_per_token)`: `()` Σ −log p(ŷ_t) over the SFT tokens (paper Eq. 1, before normalisation) and
        `(N, C)` T²·KL(q̃‖p̃) per rollout position over the teacher's top-K (paper Eq. 4), 0 at padding.
    """
    num_rows, length, k = teacher.indices.shape
    nll_sum, student_logits = nll_and_topk_logits(
        sft_hidden,
        sft_labels,
        rollout_hidden.reshape(num_rows * length, -1),
        teacher.indices.reshape(-1, k),
        head,
        chunk_size=chunk_size,
        num_chunks=num_chunks,
        recompute=recompute,
    )
    kl = topk_forward_kl_per_token(
        student_logits.view(num_rows, length, k), teacher.logprobs, completion_mask, temperature=temperature
    )
    return nll_sum, kl


def micro_batch_losses(
    nll_sum: torch.Tensor, num_sft_tokens: torch.Tensor, kl_per_sequence: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(L_SFT, L_KL)` as means over this micro-batch: NLL per SFT token, KL per rollout.

    The normalisation when the Trainer averages micro-batch losses itself (`num_items_in_batch` is `None`): each
    micro-batch's loss is already a mean, and the Trainer divides their sum by the accumulation steps.
    """
    return nll_sum / num_sft_tokens.clamp(min=1), kl_per_sequence.mean()


def window_losses(
    nll_sum: torch.Tensor, kl_per_sequence: torch.Tensor, num_items_in_batch, num_rollouts_in_window: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(L_SFT, L_KL)` as this micro-batch's share of the accumulation window's means (as `SFTTrainer` normalises):
    Σ NLL over the window's SFT tokens (`num_items_in_batch`, all ranks when tokens are averaged across devices) and
    Σ KL over the window's rollouts (`num_rollouts_in_window`, counted the same way). Summed over the window's
    micro-batches they give the window means, so the gradient does not depend on how the window is split.
    (OpenRLHF's `aggregate_loss` makes the same choice between per-micro-batch and per-window means.)
    """
    tokens = torch.as_tensor(num_items_in_batch, device=nll_sum.device).clamp(min=1)
    return nll_sum / tokens, kl_per_sequence.sum() / (num_rollouts_in_window or kl_per_sequence.numel())
