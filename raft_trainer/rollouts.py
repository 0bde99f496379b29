"""On-policy rollouts: sample z ~ p_θ(·|x) from the current student, cut at the first EOS or stop string, and build
the token-level inputs the student and the teacher score them with (prompt ⊕ completion ids, never re-tokenised).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import StoppingCriteriaList

from .stopping import StopOnText, mask_after_first_eos, mask_after_first_stop_string


@dataclass
class Rollouts:
    """Sampled completions for a batch of prompts (each prompt repeated `num_generations` times, consecutively).

    Attributes:
        completion_ids (`torch.LongTensor`): `(N, C)` sampled ids, pad after the end.
        completion_mask (`torch.LongTensor`): `(N, C)` 1 up to and including the first EOS or the token that completes
            a stop string; these are the positions the distillation term covers.
        finished (`torch.BoolTensor`, *optional*): `(N,)` the rollout ended (EOS or stop string) rather than being
            clipped at `max_completion_length`.
    """

    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    finished: torch.Tensor | None = None

    @property
    def lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(-1)


@torch.no_grad()
def sample_rollouts(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    generation_config,
    eos_token_ids: list[int],
    tokenizer=None,
    stop_strings: Sequence[str] = (),
) -> Rollouts:
    """Sample completions with `model.generate` from left-padded prompts; `generation_config.num_return_sequences`
    rollouts per prompt, each ending at its first EOS or at the token that completes one of `stop_strings` (which
    need `tokenizer`). The caller puts the model in eval mode and gathers sharded weights.
    """
    criteria = StoppingCriteriaList([StopOnText(tokenizer, stop_strings, prompt_ids.size(1))] if stop_strings else [])
    output = model.generate(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        generation_config=generation_config,
        stopping_criteria=criteria,
    )
    pad_id = generation_config.pad_token_id if generation_config.pad_token_id is not None else eos_token_ids[0]
    rollouts = _cut_at_first_eos(output[:, prompt_ids.size(1) :], eos_token_ids, pad_id)
    return end_at_stop_strings(rollouts, tokenizer, stop_strings, pad_id)


def end_at_stop_strings(rollouts: Rollouts, tokenizer, stop_strings: Sequence[str], pad_id: int) -> Rollouts:
    """`rollouts` with each row ending at the token that completes its first stop string (kept, as EOS is)."""
    if not stop_strings:
        return rollouts
    mask, stopped = mask_after_first_stop_string(
        tokenizer, rollouts.completion_ids, rollouts.completion_mask, stop_strings
    )
    finished = stopped if rollouts.finished is None else rollouts.finished | stopped
    return Rollouts(rollouts.completion_ids.masked_fill(mask == 0, pad_id), mask, finished)


def rollouts_from_token_lists(
    completions: list[list[int]], *, eos_token_ids: list[int], pad_token_id: int, device=None
) -> Rollouts:
    """Completions given as token-id lists (an inference engine's output) as `Rollouts`.

    Example:
    ```python
    >>> r = rollouts_from_token_lists([[5, 2, 9], [6], []], eos_token_ids=[2], pad_token_id=0)
    >>> r.completion_ids
    tensor([[5, 2, 0],
            [6, 0, 0],
            [2, 0, 0]])
    >>> r.lengths
    tensor([2, 1, 1])

    ```
    """
    width = max(1, *(len(c) for c in completions))
    rows = [(c or [eos_token_ids[0]]) for c in completions]  # an empty completion is an immediate EOS
    ids = torch.tensor([row + [pad_token_id] * (width - len(row)) for row in rows], device=device)
    lengths = torch.tensor([len(row) for row in rows], device=device)
    return _cut_at_first_eos(ids, eos_token_ids, pad_token_id, torch.arange(width, device=device) < lengths[:, None])


def _cut_at_first_eos(completion_ids: torch.Tensor, eos_token_ids: list[int], pad_id: int, valid=None) -> Rollouts:
    """Mask and pad everything after each row's first EOS (and outside `valid`); no tokens at all = a lone EOS."""
    if completion_ids.size(1) == 0:  # a generation that stopped before producing anything
        completion_ids = completion_ids.new_full((completion_ids.size(0), 1), eos_token_ids[0])
    mask = mask_after_first_eos(completion_ids, eos_token_ids)
    if valid is not None:
        mask = mask * valid.long()
    is_eos = torch.isin(completion_ids, torch.tensor(eos_token_ids, device=completion_ids.device))
    return Rollouts(completion_ids.masked_fill(mask == 0, pad_id), mask, (is_eos & mask.bool()).any(-1))


def append_completions(
    prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, rollouts: Rollouts
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded prompts ⊕ right-padded completions -> `(input_ids, attention_mask, position_ids)`.

    Prompts are repeated to match the rollouts. Positions count real tokens only, so a left-padded row is scored
    exactly like the same row without padding.

    Example:
    ```python
    >>> r = Rollouts(torch.tensor([[7, 2], [8, 0]]), torch.tensor([[1, 1], [1, 0]]))
    >>> ids, mask, pos = append_completions(torch.tensor([[0, 5]]), torch.tensor([[0, 1]]), r)
    >>> ids
    tensor([[0, 5, 7, 2],
            [0, 5, 8, 0]])
    >>> pos
    tensor([[0, 0, 1, 2],
            [0, 0, 1, 1]])

    ```
    """
    repeats = rollouts.completion_ids.size(0) // prompt_ids.size(0)
    prompt_ids = prompt_ids.repeat_interleave(repeats, dim=0)
    prompt_mask = prompt_mask.repeat_interleave(repeats, dim=0)
    input_ids = torch.cat([prompt_ids, rollouts.completion_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, rollouts.completion_mask.to(prompt_mask.dtype)], dim=1)
    return input_ids, attention_mask, positions_from_mask(attention_mask)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip padding: `cumsum(mask) − 1`, clamped at 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
