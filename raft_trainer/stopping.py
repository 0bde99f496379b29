"""Where a generated completion ends: at its first EOS, or at the token that completes a stop string.

Shared by the training rollouts (`rollouts.py`) and the refine/eval generation backends (`backends/`), so that a
completion ends by the same rule everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import StoppingCriteria


def decode_escapes(strings: Sequence[str]) -> list[str]:
    r"""Turn the `\n` and `\t` typed on a command line into real newlines and tabs (stop strings)."""
    return [s.replace("\\n", "\n").replace("\\t", "\t") for s in strings]


def resolve_stop_strings(stop_strings: Sequence[str] | None, tokenizer) -> list[str]:
    """`RAFTConfig.stop_strings`, or its default: a newline for a tokenizer without a chat template (a base model
    never emits EOS after an answer: its rollouts would run to `max_completion_length`), none otherwise."""
    if stop_strings is not None:
        return list(stop_strings)
    return [] if getattr(tokenizer, "chat_template", None) else ["\n"]


def mask_after_first_eos(completion_ids: torch.Tensor, eos_token_ids: list[int]) -> torch.Tensor:
    """1 on every token up to and including the first EOS, 0 after it.

    Example:
    ```python
    >>> mask_after_first_eos(torch.tensor([[4, 2, 7], [2, 2, 2], [4, 5, 6]]), eos_token_ids=[2])
    tensor([[1, 1, 0],
            [1, 0, 0],
            [1, 1, 1]])

    ```
    """
    is_eos = torch.isin(completion_ids, torch.tensor(eos_token_ids, device=completion_ids.device))
    eos_before = is_eos.long().cumsum(-1) - is_eos.long()  # EOS strictly before each position
    return (eos_before == 0).long()


def first_stop_length(tokenizer, ids: Sequence[int], stop_strings: Sequence[str]) -> int | None:
    """The number of tokens up to and including the one that completes the first stop string in the decoded text of
    `ids`, or `None` when the text holds none. Binary search over prefixes: `O(log n)` decodes.

    A token that only *contains* the end of a stop string (Gemma's `'.\\n'`, say) ends the completion and is kept, as
    EOS is kept.
    """

    def stops(length: int) -> bool:
        text = tokenizer.decode(list(ids[:length]), skip_special_tokens=True)
        return any(s in text for s in stop_strings)

    if not stop_strings or not ids or not stops(len(ids)):
        return None
    low, high = 1, len(ids)
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if stops(middle) else (middle + 1, high)
    return low


def mask_after_first_stop_string(
    tokenizer, completion_ids: torch.Tensor, mask: torch.Tensor, stop_strings: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(N, C)` ids and mask -> `(mask cut after each row's stop string, (N,) bool: the row hit a stop string)`."""
    mask = mask.clone()
    stopped = torch.zeros(mask.size(0), dtype=torch.bool, device=mask.device)
    if not stop_strings:
        return mask, stopped
    for row, (ids, row_mask) in enumerate(zip(completion_ids.tolist(), mask.tolist())):
        length = first_stop_length(tokenizer, ids[: sum(row_mask)], stop_strings)
        if length is not None:
            mask[row, length:] = 0
            stopped[row] = True
    return mask, stopped


class StopOnText(StoppingCriteria):
    """Stop a row once its decoded completion contains a stop string. Decoding the completions each step costs far
    less than a forward pass, works with every tokenizer, and needs no vocabulary scan (transformers'
    `StopStringCriteria` scans the whole vocabulary per call, ~6 s at Gemma's 262k tokens, and fails on word-level
    vocabularies)."""

    def __init__(self, tokenizer, stop: Sequence[str], prompt_length: int):
        self.tokenizer, self.stop, self.prompt_length = tokenizer, tuple(stop), prompt_length

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        if not self.stop:
            return torch.zeros(len(input_ids), dtype=torch.bool, device=input_ids.device)
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop) for t in texts], dtype=torch.bool, device=input_ids.device)
