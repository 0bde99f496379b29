"""Recognise the dataset formats RAFT accepts and normalise them to prompt / completion / reference columns.

The teacher's prompt is built from the tokenised rows in `teacher_prompts`.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable
from importlib import resources
from typing import Any

from datasets import Dataset, IterableDataset, load_dataset
from trl.data_utils import get_dataset_column_names, maybe_convert_to_chatml

from .errors import DataError
from .teacher_prompts import is_chat_messages
from .templates import DEFAULT_PLAIN_PROMPT, fill_template

_EXPECTED = (
    "'prompt' and 'completion' (plain strings or lists of chat messages), 'messages' (a conversation whose last "
    "assistant turn is the target), ShareGPT 'conversations', or 'question' and 'answer'; optionally 'reference' "
    "(the teacher's context, defaults to the target)"
)


DATA_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}


def example_dataset_path() -> str:
    """The bundled example domain QA file (prompt / completion JSONL)."""
    return str(resources.files("raft_trainer") / "assets" / "example_domain.jsonl")


def load_data(name_or_path: str | None, config: str | None = None, split: str = "train"):
    """A split of a dataset name, a local data file (JSONL, JSON, CSV, Parquet) or, when `None`, the bundled example.

    Raises `ValueError` naming the file for a local data file that does not exist, is empty, has no rows or cannot
    be read — for JSON Lines and JSON with the line number and the offending text (instead of a minute of hub
    retries, a bare `StopIteration` or `datasets`' "An error occurred while generating the dataset").
    """
    name_or_path = name_or_path or example_dataset_path()
    if os.path.splitext(name_or_path)[1].lower() in DATA_BUILDERS:
        return load_data_file(name_or_path, split)
    dataset = load_dataset(name_or_path, name=config, split=split)
    if isinstance(dataset, Dataset) and len(dataset) == 0:
        raise DataError(f"The dataset {name_or_path!r} (split {split!r}) has no rows.")
    return dataset


def load_data_file(path: str, split: str = "train") -> Dataset:
    """A local data file (JSONL, JSON, CSV, Parquet: `DATA_BUILDERS`) as the split `split`, checked: the checks of
    `load_data` for a local file, which a `datasets:` mixture's files get too (`check_mixture_files`)."""
    extension = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise DataError(f"No such data file: {path!r} (a {extension} name is read as a local file).")
    if os.path.getsize(path) == 0:
        raise DataError(f"The data file {path!r} is empty (0 bytes): the dataset has no rows.")
    try:
        dataset = load_dataset(DATA_BUILDERS[extension], data_files={split: path}, split=split)
    except Exception as error:  # noqa: BLE001 - datasets wraps every reader failure in DatasetGenerationError
        # `datasets` only says that the file failed: read it again line by line to name the bad line.
        if extension == ".jsonl":
            read_jsonl(path)
        elif extension == ".json":
            _read_json(path)
        cause = error.__cause__ or error
        if "corresponds to no data" in str(cause):  # blank lines only, `[]`, a CSV header alone
            raise DataError(f"The data file {path!r} (split {split!r}) has no rows.") from None
        raise DataError(f"Could not read the data file {path!r}: {type(cause).__name__}: {cause}") from error
    if len(dataset) == 0:
        raise DataError(f"The dataset {path!r} (split {split!r}) has no rows.")
    return dataset


def check_mixture_files(mixture) -> None:
    """Read every local data file of a `datasets:` mixture (TRL's `DatasetMixtureConfig`) with `load_data_file`, so
    that a missing, empty or malformed file is named with its line as a single `--dataset_name` file is (instead of
    `datasets`' "Expected object or value" or a bare `StopIteration` from `trl.get_dataset`). Files given as a URL, a
    hub dataset or a glob that matches nothing are left to `datasets`."""
    for entry in mixture.datasets:
        files = entry.data_files
        if files is None:  # `path: data/qa.jsonl`: the file itself
            files = {entry.split: entry.path} if os.path.splitext(entry.path)[1].lower() in DATA_BUILDERS else {}
        elif not isinstance(files, dict):
            files = {entry.split: files}
        # relative data files are read from `data_dir` (inside `path` when that is a local folder), as in `datasets`
        base = os.path.join(entry.path if os.path.isdir(entry.path) else "", entry.data_dir or "")
        for split, names in files.items():
            for name in [names] if isinstance(names, str) else names:
                if "://" in name or os.path.splitext(name)[1].lower() not in DATA_BUILDERS:
                    continue
                name = os.path.join(base, os.path.expanduser(name))
                for path in sorted(glob.glob(name)) if glob.has_magic(name) else [name]:
                    load_data_file(path, split)


def read_jsonl(path: str) -> list[dict]:
    """The rows of a JSON Lines file (blank lines skipped); one JSON object per line.

    Raises `ValueError` naming the file, the line number and the offending text (first 80 characters) for a line
    that is not UTF-8, not JSON (a bad or truncated line) or not an object.
    """
    rows = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{path}, line {number}: not UTF-8 text ({error.reason} at byte {error.start}); save the file as "
                    "UTF-8 (UTF-16 files, as some Windows editors write them, are not read)."
                ) from None
            line = line.lstrip("\ufeff") if number == 1 else line
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"{path}, line {number}: not valid JSON ({error.msg}, column {error.colno}): {_excerpt(line)}"
                ) from None
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}, line {number}: expected one JSON object per line, got a {type(row).__name__}: "
                    f"{_excerpt(line)}"
                )
            rows.append(row)
    return rows


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8.") from None
    except json.JSONDecodeError as error:
        line = error.doc.splitlines()[error.lineno - 1] if error.doc.splitlines() else ""
        raise DataError(
            f"{path}, line {error.lineno}: not valid JSON ({error.msg}, column {error.colno}): {_excerpt(line)}"
        ) from None


def _excerpt(text: str, limit: int = 80) -> str:
    text = text.rstrip("\n")
    return repr(text if len(text) <= limit else text[:limit] + "…")


def completion_text(value: Any) -> str:
    """The text of a completion: a string, or the content of the (last) assistant message."""
    if is_chat_messages(value):
        return str(value[-1].get("content") or "") if value else ""
    return value if isinstance(value, str) else ""


def split_messages(example: dict[str, Any]) -> dict[str, Any]:
    """`messages` -> conversational prompt (every turn before the last assistant turn) and completion (that turn)."""
    messages = example["messages"]
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        return {"prompt": messages, "completion": []}
    return {"prompt": messages[:last], "completion": [messages[last]]}


def _from_question_answer(example: dict[str, Any], output_format: str) -> dict[str, Any]:
    question, answer = example["question"], example["answer"]
    if not (isinstance(question, str) and isinstance(answer, str)):
        return {"prompt": question, "completion": answer}  # reported as a bad row by `_problems`
    prompt, prefix = qa_prompt(question, output_format)
    completion = prefix + answer.strip()
    return {
        "prompt": prompt,
        "completion": [{"role": "assistant", "content": completion}] if prefix == "" else completion,
    }


def _add_reference(example: dict[str, Any]) -> dict[str, Any]:
    reference = example.get("reference")
    return {
        "reference": reference
        if isinstance(reference, str) and reference.strip()
        else completion_text(example["completion"])
    }


def _problems(example: dict[str, Any]) -> str | None:
    prompt, completion = example["prompt"], example["completion"]
    if is_chat_messages(prompt) != is_chat_messages(completion) and completion:
        return "prompt and completion mix plain text and chat messages"
    if not (prompt if is_chat_messages(prompt) else isinstance(prompt, str) and prompt.strip()):
        return "empty or non-text prompt"
    if not completion_text(completion).strip():
        return "empty or non-text completion (answer)"
    return None


def qa_prompt(question: str, output_format: str, template: str = DEFAULT_PLAIN_PROMPT) -> tuple[str | list, str]:
    """The prompt for a (question, answer) row and the text the answer is prefixed with in the completion.

    `output_format="conversational"`: one user message, no prefix (chat models); `"plain"`: `template` filled with
    the question (default `"Question: {question}\nAnswer:"`) and a space before the answer.
    """
    if output_format == "conversational":
        return [{"role": "user", "content": question.strip()}], ""
    return fill_template(template, question=question.strip()), " "


def qa_prompt_format(tokenizer) -> str:
    """`"conversational"` for a tokenizer (or processor) with a chat template, else `"plain"` (base models)."""
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    return "conversational" if getattr(tokenizer, "chat_template", None) else "plain"


def from_sharegpt(example: dict[str, Any]) -> dict[str, Any]:
    """ShareGPT `conversations` (`from`/`value`) -> `messages` (`role`/`content`), by `trl.data_utils`, with ShareGPT's
    role names (`human`, `gpt`) mapped to the chat template's (`user`, `assistant`)."""
    messages = maybe_convert_to_chatml({"conversations": example["conversations"]})["messages"]
    return {"messages": [{**m, "role": SHAREGPT_ROLES.get(m["role"], m["role"])} for m in messages]}


def normalize_dataset(
    dataset: Dataset | IterableDataset, name: str = "train", qa_format: str | Callable[[], str] = "plain"
) -> Dataset | IterableDataset:
    """Normalise to `prompt`, `completion`, `reference` columns; raise `ValueError` on unknown formats or bad rows.

    Accepted (docs/raft_trainer.md, "Dataset formats"): `prompt`/`completion` (plain or conversational), `messages`
    (the last assistant turn is the target), ShareGPT `conversations`, `question`/`answer` (turned into prompts by
    `qa_prompt` in `qa_format`, or the format a callable returns, asked only for such data), an optional `reference`
    column. Other columns are kept. A dataset that is already tokenised (`input_ids`) must also carry
    `teacher_prompt_ids`.
    """
    empty = len(dataset) == 0 if isinstance(dataset, Dataset) else next(iter(dataset), None) is None
    if empty:
        raise DataError(f"The {name} dataset has no rows.")
    columns = get_dataset_column_names(dataset)
    if "input_ids" in columns:
        if "teacher_prompt_ids" not in columns:
            raise DataError(
                f"The {name} dataset is already tokenised (found columns {columns}) but has no 'teacher_prompt_ids'; "
                f"RAFT needs the teacher's prompt. Pass the untokenised data instead: {_EXPECTED}."
            )
        return dataset
    if "conversations" in columns and not {"messages", "prompt", "completion"} & set(columns):
        dataset = dataset.map(from_sharegpt, remove_columns=["conversations"])
        columns = get_dataset_column_names(dataset)
    if {"question", "answer"} <= set(columns) and not {"prompt", "completion", "messages"} & set(columns):
        output_format = qa_format() if callable(qa_format) else qa_format
        dataset = dataset.map(
            _from_question_answer, fn_kwargs={"output_format": output_format}, remove_columns=["question", "answer"]
        )
        columns = get_dataset_column_names(dataset)
    if "messages" in columns and not {"prompt", "completion"} <= set(columns):
        dataset = dataset.map(split_messages, remove_columns=["messages"])
    elif not {"prompt", "completion"} <= set(columns):
        raise DataError(f"The {name} dataset has columns {columns}; RAFTTrainer expects {_EXPECTED}.")
    dataset = dataset.map(_add_reference)
    if isinstance(dataset, Dataset):
        bad = [(i, p) for i, p in enumerate(map(_problems, dataset)) if p is not None]
        if bad:
            shown = "; ".join(f"row {i}: {p}" for i, p in bad[:5])
            raise DataError(
                f"{len(bad)} of {len(dataset)} rows of the {name} dataset cannot be trained on ({shown}"
                f"{'; ...' if len(bad) > 5 else ''}). Fix or drop them; nothing was changed."
            )
    return dataset


def check_chat_template(tokenizer, dataset: Dataset | IterableDataset) -> None:
    """Raise a clear error when conversational data meets a tokenizer without a chat template."""
    first = next(iter(dataset))
    if is_chat_messages(first.get("prompt")) and not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "The dataset is conversational (lists of messages) but the tokenizer has no chat template. Set "
            "`chat_template_path` in RAFTConfig, give the tokenizer a `chat_template`, or use plain-text "
            "'prompt'/'completion' columns."
        )
