"""RAFTDataCollator: the SFT batch, the left-padded prompts the student samples from, and the teacher's prompts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
from trl.trainer.utils import pad

from .teacher_prompts import prompt_length


@dataclass
class RAFTDataCollator:
    """Collate tokenised RAFT examples (`input_ids`, `labels`, and `teacher_prompt_ids` when the teacher sees the
    reference).

    Returns the SFT batch of `sft_collator` (by default TRL's `DataCollatorForLanguageModeling`: right-padded
    `input_ids`, `attention_mask`, `labels` with prompt tokens at -100) plus:
    - `prompt_input_ids`, `prompt_attention_mask`: the prompt alone, left-padded, for generation;
    - `teacher_prompt_ids`, `teacher_prompt_attention_mask`: the teacher's prompt, left-padded, to which the trainer
      appends the student's completion ids (never re-tokenised).

    Args:
        pad_token_id (`int`): padding id.
        pad_to_multiple_of (`int`, *optional*): passed to TRL's collator.
        sft_collator (`Callable`, *optional*): a `data_collator` given to `RAFTTrainer`; it receives the examples
            without `teacher_prompt_ids` and must return `input_ids`, `attention_mask` and `labels`.

    Example:
    ```python
    >>> collator = RAFTDataCollator(pad_token_id=0)
    >>> batch = collator([
    ...     {"input_ids": [5, 6, 7, 8], "labels": [-100, -100, 7, 8], "teacher_prompt_ids": [9, 5, 6]},
    ...     {"input_ids": [5, 7, 2], "labels": [-100, 7, 2], "teacher_prompt_ids": [9, 9, 5]},
    ... ])
    >>> batch["labels"]
    tensor([[-100, -100,    7,    8],
            [-100,    7,    2, -100]])
    >>> batch["prompt_input_ids"]
    tensor([[5, 6],
            [0, 5]])
    >>> batch["teacher_prompt_attention_mask"]
    tensor([[1, 1, 1],
            [1, 1, 1]])

    ```
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    sft_collator: Callable[[list[dict]], dict] | None = None

    def __post_init__(self):
        if self.sft_collator is None:
            self.sft_collator = DataCollatorForLanguageModeling(
                pad_token_id=self.pad_token_id, pad_to_multiple_of=self.pad_to_multiple_of
            )

    def _left_pad(self, sequences: list[list[int]], ids_key: str, mask_key: str) -> dict[str, torch.Tensor]:
        ids = [torch.tensor(s, dtype=torch.long) for s in sequences]
        return {
            ids_key: pad(ids, padding_value=self.pad_token_id, padding_side="left"),
            mask_key: pad([torch.ones_like(t) for t in ids], padding_value=0, padding_side="left"),
        }

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        missing = {"input_ids", "labels"} - set(examples[0])
        if missing:
            raise ValueError(
                f"RAFTDataCollator needs tokenised examples with {sorted(missing)}; got keys {sorted(examples[0])}. "
                "Let RAFTTrainer prepare the dataset (do not set `skip_prepare_dataset`)."
            )
        batch = self.sft_collator([{k: v for k, v in e.items() if k != "teacher_prompt_ids"} for e in examples])
        missing = {"input_ids", "attention_mask", "labels"} - set(batch)
        if missing:
            raise ValueError(
                f"The data collator passed to RAFTTrainer returned {sorted(batch)}, without {sorted(missing)}. RAFT "
                "needs an SFT batch with input_ids, attention_mask and labels (prompt tokens at -100); it adds the "
                "prompts the rollouts start from and the teacher's prompts itself."
            )
        prompts = [list(e["input_ids"][: prompt_length(e["labels"])]) for e in examples]
        batch.update(self._left_pad(prompts, "prompt_input_ids", "prompt_attention_mask"))
        if "teacher_prompt_ids" in examples[0]:  # absent without answer conditioning: the teacher sees the prompt
            teacher_prompts = [list(e["teacher_prompt_ids"]) for e in examples]
            batch.update(self._left_pad(teacher_prompts, "teacher_prompt_ids", "teacher_prompt_attention_mask"))
        return batch
