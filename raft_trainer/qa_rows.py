"""(question, gold answer) rows, as `raft refine` refines them and `raft eval` scores them: the options that say how
they are read (`QADataArguments`), the prompt format `"auto"` resolves to (`resolve_output_format`), and the reader
(`read_rows`), which accepts any dataset layout, skips bad rows with a reason instead of raising on them, and keeps the
input's prompt format so that RAFTTrainer trains on refine's output rows directly."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .backends import is_chat
from .data import from_sharegpt, qa_prompt, split_messages
from .errors import DataError
from .options import option
from .templates import DEFAULT_PLAIN_PROMPT


@dataclass
class QADataArguments:
    """How (question, gold answer) rows are read from a dataset: shared by `RefineConfig` and `EvalConfig`."""

    dataset_config: str | None = option("Dataset configuration name (for named datasets).", default=None)
    dataset_split: str = option("Split to read.", default="train")
    question_column: str | None = option(
        "Question column (default: question, else prompt, else messages).", default=None
    )
    answer_column: str | None = option("Gold answer column (default: answer, else completion).", default=None)
    id_column: str | None = option("Row id column (default: id if present, else the row number).", default=None)
    output_format: str = option(
        "Prompt format for question/answer input: 'auto' (conversational when the model's tokenizer has a chat "
        "template, else plain; a served model: by --api), 'conversational' (a user message, for chat models) or "
        "'plain' (plain_prompt_template). prompt/completion and messages input keep their own format.",
        default="auto",
    )
    plain_prompt_template: str = option("Plain prompt for output_format=plain.", default=DEFAULT_PLAIN_PROMPT)
    max_input_chars: int = option(
        "Rows whose question + answer exceed this many characters are skipped.", default=8000
    )

    def __post_init__(self):
        if self.output_format not in {"auto", "conversational", "plain"}:
            raise DataError(f"output_format must be 'auto', 'conversational' or 'plain', got {self.output_format!r}.")
        if "{question}" not in self.plain_prompt_template:
            raise DataError("plain_prompt_template must contain '{question}'.")


def resolve_output_format(output_format: str, model_spec: str, api: str = "chat", backend=None) -> str:
    """`output_format` with `"auto"` made concrete for the model that will read the prompts.

    `"auto"`: `"conversational"` when the tokenizer of `model_spec` (a local path, a hub name or `vllm:PATH`) has a
    chat template, else `"plain"` (the rule `raft train` applies, `data.qa_prompt_format`); a served model
    (`name@http://...`) is conversational for `api="chat"` and plain for `api="completions"`. An already built
    `backend` for the spec is asked instead: its tokenizer decides, and one without a tokenizer takes chat prompts.
    """
    if output_format != "auto":
        return output_format
    if backend is not None:
        from .data import qa_prompt_format

        tokenizer = getattr(backend, "tokenizer", None)
        return "conversational" if tokenizer is None else qa_prompt_format(tokenizer)
    _, sep, url = model_spec.rpartition("@")
    if sep and url.startswith(("http://", "https://")):
        return "conversational" if api == "chat" else "plain"
    from transformers import AutoTokenizer

    from .data import qa_prompt_format

    return qa_prompt_format(AutoTokenizer.from_pretrained(model_spec.removeprefix("vllm:")))


@dataclass
class QARow:
    """One (question, gold answer) pair: the texts the models see, and the training prompt an output row carries."""

    id: str
    question: str
    answer: str
    prompt: Any  # str, or chat messages
    answer_prefix: str = ""  # leading whitespace of a plain gold completion (" Paris."), given back to a new answer
    aliases: tuple[str, ...] = ()  # other accepted answers (an `aliases` column), for domain accuracy

    def training_record(self, answer: str, provenance: dict) -> dict:
        """The prompt/completion row that trains on `answer` (refine's ŷ), in the input's prompt format."""
        completion = (
            [{"role": "assistant", "content": answer}] if is_chat(self.prompt) else self.answer_prefix + answer
        )
        return {"id": self.id, "prompt": self.prompt, "completion": completion, "provenance": provenance}


def resolve_columns(columns: list[str], config: QADataArguments) -> tuple[str, str | None]:
    """(question column, answer column); `messages` carries both and returns `None` for the answer."""
    question = config.question_column or next((c for c in ("question", "prompt", "messages") if c in columns), None)
    answer = config.answer_column or next((c for c in ("answer", "completion") if c in columns), None)
    if question == "messages" and config.answer_column is None:
        answer = None
    missing = [c for c in (question, answer) if c is not None and c not in columns]
    if question is None or (answer is None and question != "messages") or missing:
        raise DataError(
            f"Cannot find the question and answer columns in {columns}: expected question/answer, prompt/completion "
            f"or messages, or name them with --question_column and --answer_column."
        )
    return question, answer


def question_from_plain_prompt(prompt: str, template: str) -> str:
    """The question inside a plain prompt built with `template` (the prompt itself if it does not match).

    ```python
    >>> question_from_plain_prompt("Question: What is GDP?\\nAnswer:", "Question: {question}\\nAnswer:")
    'What is GDP?'

    ```
    """
    head, _, tail = template.partition("{question}")
    match = re.fullmatch(
        re.escape(head.strip()) + r"\s*(.+?)\s*" + re.escape(tail.strip()), prompt.strip(), flags=re.S
    )
    return match.group(1) if match else prompt


def _text(value: Any, role: str) -> str | None:
    """The text of a plain value, or of the last `role` message of a chat value; `None` if it is neither."""
    if isinstance(value, str):
        return value
    if is_chat(value):
        contents = [m.get("content") for m in value if m.get("role") == role]
        return contents[-1] if contents and isinstance(contents[-1], str) else None
    return None


def read_rows(dataset, config: QADataArguments, max_rows: int | None = None) -> tuple[list[QARow], list[dict]]:
    """Usable rows and skipped rows (`{"id", "row", "reason"}`), in input order, from the first `max_rows` rows of
    `dataset` (all when `None`).

    Question/answer rows get prompts in `config.output_format`; `"auto"` is made concrete from the model by
    `refine()` and `evaluate()` before they call this, and read here, without a model, as `"conversational"`.

    Raises `ValueError` when no row is usable (an empty dataset, or every row skipped: the first reason is named)."""
    from datasets import Dataset

    output_format = "conversational" if config.output_format == "auto" else config.output_format

    columns = list(dataset.column_names)
    if "conversations" in columns and not {"messages", "question", "prompt"} & set(columns):
        dataset = dataset.map(from_sharegpt, remove_columns=["conversations"])  # ShareGPT -> messages
        columns = list(dataset.column_names)
    question_column, answer_column = resolve_columns(columns, config)
    id_column = config.id_column or ("id" if "id" in columns else None)
    mirror_format = question_column in {"prompt", "messages"}
    rows, skipped, seen = [], [], set()
    examples = (
        dataset.select(range(min(max_rows, len(dataset)))) if max_rows and isinstance(dataset, Dataset) else dataset
    )
    for index, example in enumerate(examples):
        if (
            question_column == "messages"
            and isinstance(example.get("messages"), list)
            and is_chat(example["messages"])
        ):
            example = {**example, **split_messages(example)}
            question_value, answer_value = example["prompt"], example["completion"]
        else:
            question_value, answer_value = example.get(question_column), example.get(answer_column)
        row_id = str(example[id_column]) if id_column and example.get(id_column) is not None else str(index)
        question, answer = _text(question_value, "user"), _text(answer_value, "assistant")
        reason = _skip_reason(question_value, question, answer_value, answer, config.max_input_chars)
        if reason is None and row_id in seen:
            reason = f"duplicate id ({row_id!r} appeared before)"
        if reason is not None:
            skipped.append({"id": row_id, "row": index, "reason": reason})
            continue
        seen.add(row_id)
        if mirror_format:
            prompt, prefix = question_value, answer[: len(answer) - len(answer.lstrip())]
            if isinstance(prompt, str):
                question = question_from_plain_prompt(prompt, config.plain_prompt_template)
        else:
            prompt, prefix = qa_prompt(question, output_format, config.plain_prompt_template)
        aliases = example.get("aliases")
        aliases = tuple(a for a in aliases if isinstance(a, str) and a.strip()) if isinstance(aliases, list) else ()
        rows.append(QARow(row_id, question.strip(), answer.strip(), prompt, prefix, aliases))
    if not rows:
        detail = (
            f"all {len(skipped)} rows were skipped (first: row {skipped[0]['row']}, {skipped[0]['reason']})"
            if skipped
            else "the dataset has no rows"
        )
        raise DataError(f"No usable question/answer rows ({question_column!r}/{answer_column!r}): {detail}.")
    return rows, skipped


def _skip_reason(question_value, question, answer_value, answer, max_chars: int) -> str | None:
    for name, value, text in (("question", question_value, question), ("answer", answer_value, answer)):
        if value is None:
            return f"missing {name}"
        if text is None:
            return f"non-text {name} ({type(value).__name__})"
        if not text.strip():
            return f"empty {name}"
    if len(question) + len(answer) > max_chars:
        return f"too long ({len(question) + len(answer)} characters > max_input_chars={max_chars})"
    return None
