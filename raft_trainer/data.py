"""Recognise the dataset formats RAFT accepts, normalise them to prompt / completion / reference, and tokenise the
teacher's prompt (the template with the reference answer), cutting the reference, never the question, when too long.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from typing import Any

from datasets import Dataset, IterableDataset, load_dataset
from trl.data_utils import get_dataset_column_names

REFERENCE_PLACEHOLDER = "{reference}"
PROMPT_PLACEHOLDER = "{prompt}"
DEFAULT_TEACHER_TEMPLATE = (
    "Background reference knowledge: {reference}\n"
    "Answer the question based on the reference knowledge: {prompt}\n"
    "Answer: "
)
_EXPECTED = (
    "'prompt' and 'completion' (plain strings or lists of chat messages), or 'messages' (a conversation whose last "
    "assistant turn is the target); optionally 'reference' (the teacher's context, defaults to the target)"
)
_SENTINEL = "\ue000RAFT-REFERENCE\ue000"


DATA_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def example_dataset_path() -> str:
    """The bundled example domain QA file (prompt / completion JSONL)."""
    return str(resources.files("raft_trainer") / "assets" / "example_domain.jsonl")


def load_data(name_or_path: str | None, config: str | None = None, split: str = "train"):
    """A split of a dataset name, a local data file (JSONL, JSON, CSV, Parquet) or, when `None`, the bundled example."""
    name_or_path = name_or_path or example_dataset_path()
    extension = os.path.splitext(name_or_path)[1].lower()
    if os.path.isfile(name_or_path) and extension in DATA_BUILDERS:
        return load_dataset(DATA_BUILDERS[extension], data_files={split: name_or_path}, split=split)
    return load_dataset(name_or_path, name=config, split=split)


def validate_teacher_template(template: str) -> None:
    """Raise `ValueError` unless the template holds exactly the `{reference}` and `{prompt}` placeholders."""
    fields = set(re.findall(r"\{(\w*)\}", template))
    missing = {"reference", "prompt"} - fields
    unknown = fields - {"reference", "prompt"}
    if missing or unknown:
        raise ValueError(
            f"`teacher_template` must contain the placeholders {{reference}} and {{prompt}} and no others; "
            f"missing: {sorted(missing)}, unknown: {sorted(unknown)}. Got: {template!r}"
        )


def render_teacher_text(template: str, *, reference: str, prompt: str) -> str:
    """Fill the template by plain replacement (braces inside the data are safe)."""
    return template.replace(REFERENCE_PLACEHOLDER, reference).replace(PROMPT_PLACEHOLDER, prompt)


def _is_chat(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value)


def _text_of(value: Any) -> str:
    """The text of a completion: a string, or the content of the (last) assistant message."""
    if _is_chat(value):
        return str(value[-1].get("content") or "") if value else ""
    return value if isinstance(value, str) else ""


def split_messages(example: dict[str, Any]) -> dict[str, Any]:
    """`messages` -> conversational prompt (every turn before the last assistant turn) and completion (that turn)."""
    messages = example["messages"]
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        return {"prompt": messages, "completion": []}
    return {"prompt": messages[:last], "completion": [messages[last]]}


def _add_reference(example: dict[str, Any]) -> dict[str, Any]:
    reference = example.get("reference")
    return {
        "reference": reference if isinstance(reference, str) and reference.strip() else _text_of(example["completion"])
    }


def _problems(example: dict[str, Any]) -> str | None:
    prompt, completion = example["prompt"], example["completion"]
    if _is_chat(prompt) != _is_chat(completion) and completion:
        return "prompt and completion mix plain text and chat messages"
    if not (prompt if _is_chat(prompt) else isinstance(prompt, str) and prompt.strip()):
        return "empty or non-text prompt"
    if not _text_of(completion).strip():
        return "empty or non-text completion (answer)"
    return None


def normalize_dataset(dataset: Dataset | IterableDataset, name: str = "train") -> Dataset | IterableDataset:
    """Normalise to `prompt`, `completion`, `reference` columns; raise `ValueError` on unknown formats or bad rows.

    Accepted: `prompt`/`completion` (plain or conversational), `messages` (the last assistant turn is the target), an
    optional `reference` column. Other columns are kept. A dataset that is already tokenised (`input_ids`) must also
    carry `teacher_prompt_ids`.
    """
    columns = get_dataset_column_names(dataset)
    if "input_ids" in columns:
        if "teacher_prompt_ids" not in columns:
            raise ValueError(
                f"The {name} dataset is already tokenised (found columns {columns}) but has no 'teacher_prompt_ids'; "
                f"RAFT needs the teacher's prompt. Pass the untokenised data instead: {_EXPECTED}."
            )
        return dataset
    if "messages" in columns and not {"prompt", "completion"} <= set(columns):
        dataset = dataset.map(split_messages, remove_columns=["messages"])
    elif not {"prompt", "completion"} <= set(columns):
        raise ValueError(f"The {name} dataset has columns {columns}; RAFTTrainer expects {_EXPECTED}.")
    dataset = dataset.map(_add_reference)
    if isinstance(dataset, Dataset):
        bad = [(i, p) for i, p in enumerate(map(_problems, dataset)) if p is not None]
        if bad:
            shown = "; ".join(f"row {i}: {p}" for i, p in bad[:5])
            raise ValueError(
                f"{len(bad)} of {len(dataset)} rows of the {name} dataset cannot be trained on ({shown}"
                f"{'; ...' if len(bad) > 5 else ''}). Fix or drop them; nothing was changed."
            )
    return dataset


def tokenize_teacher_prompt(
    tokenizer, prompt: str | list[dict], reference: str, *, template: str, max_length: int | None
) -> tuple[list[int], bool]:
    """Token ids of the teacher's prompt: the template around the reference and the question.

    A conversational prompt keeps its earlier turns; the last user turn's content becomes the filled template, and the
    chat template adds the generation prompt. When the ids exceed `max_length`, the reference is cut from its end;
    the question and the answer header are never cut (the result can then exceed `max_length`).

    Returns:
        `(ids, reference_truncated)`.
    """
    if _is_chat(prompt):
        last_user = max((i for i, m in enumerate(prompt) if m.get("role") == "user"), default=len(prompt) - 1)
        messages = [dict(m) for m in prompt]
        messages[last_user]["content"] = render_teacher_text(
            template, reference=_SENTINEL, prompt=str(messages[last_user]["content"])
        ).rstrip()
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        add_special_tokens = False  # the chat template renders BOS itself
    else:
        rendered = render_teacher_text(template, reference=_SENTINEL, prompt=prompt)
        add_special_tokens = True
    before, after = rendered.split(_SENTINEL, 1)
    before_ids = tokenizer(before, add_special_tokens=add_special_tokens)["input_ids"]
    # A tokenizer that appends EOS as a special token would put it mid-prompt, before the reference: drop it.
    if before_ids and tokenizer.eos_token_id is not None and before_ids[-1] == tokenizer.eos_token_id:
        before_ids = before_ids[:-1]
    reference_ids = tokenizer(reference, add_special_tokens=False)["input_ids"]
    after_ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    truncated = False
    if max_length is not None:
        budget = max(max_length - len(before_ids) - len(after_ids), 0)
        truncated = len(reference_ids) > budget
        reference_ids = reference_ids[:budget]
    return before_ids + reference_ids + after_ids, truncated


def add_teacher_prompt_ids(example: dict[str, Any], tokenizer, template: str, max_length: int | None) -> dict:
    """`Dataset.map` function: `teacher_prompt_ids` and `reference_truncated` for one example."""
    ids, truncated = tokenize_teacher_prompt(
        tokenizer, example["prompt"], example["reference"], template=template, max_length=max_length
    )
    return {"teacher_prompt_ids": ids, "reference_truncated": truncated}


def check_chat_template(tokenizer, dataset: Dataset | IterableDataset) -> None:
    """Raise a clear error when conversational data meets a tokenizer without a chat template."""
    first = next(iter(dataset))
    if _is_chat(first.get("prompt")) and not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "The dataset is conversational (lists of messages) but the tokenizer has no chat template. Set "
            "`chat_template_path` in RAFTConfig, give the tokenizer a `chat_template`, or use plain-text "
            "'prompt'/'completion' columns."
        )
