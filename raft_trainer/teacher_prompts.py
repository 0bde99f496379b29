"""The teacher's prompt: the student's own prompt ids with the reference context inserted before the question.

RAFT's teacher scores the student's trajectory z after the reference answer (arXiv 2606.00147, Stage 2: "Background
reference knowledge: {ŷ} / Answer the question based on the reference knowledge: {x} / Answer: {z}"). The rule this
module enforces, for every data format: the teacher row is `[teacher prompt] ⊕ z`, where the tokens of z **and every
token from the question's start to z** are exactly the student's (`[student prompt] ⊕ z`). A teacher prompt that ends
on other tokens than the student's (a trailing space, a second "Answer:" cue, another chat header) makes the teacher
score z after a sequence the tokenizer never produces; on Gemma 3 a trailing `"Answer: "` put 55% of the teacher's
mass on digits at the first answer position and collapsed trained models into digit runs.

How: the student's prompt ids S (exactly as TRL tokenised them, chat-template kwargs, tools and the prompt/completion
boundary included) are split into `S[:a]` (BOS, or the chat template's turns up to the last user message's content),
the question `S[a:b]` and the header `S[b:]` (the chat template's end of turn and generation prompt; empty for plain
text). The teacher prompt is `S[:a] ⊕ tokens(template text and reference) ⊕ S[a:b] ⊕ tokens(template text after
{prompt}) ⊕ S[b:]`. Horizontal whitespace at the end of a template piece is carried into the next piece (so the
reference and the question keep their leading-space tokens, `'▁Plan'` and not `'▁' 'Plan'`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .templates import fill_template

REFERENCE_PLACEHOLDER = "{reference}"
PROMPT_PLACEHOLDER = "{prompt}"
DEFAULT_TEACHER_TEMPLATE = (
    "Background reference knowledge: {reference}\nAnswer the question based on the reference knowledge: {prompt}"
)
_SENTINEL = "\ue000RAFT-QUESTION\ue000"
_TRAILING_SPACE = re.compile(r"[ \t]+$")
_SPACE_MARKERS = ("▁", "Ġ", " ")


def validate_teacher_template(template: str) -> None:
    """Raise `ValueError` unless the template holds exactly the `{reference}` and `{prompt}` placeholders, once each."""
    fields = re.findall(r"\{(\w*)\}", template)
    missing = {"reference", "prompt"} - set(fields)
    unknown = set(fields) - {"reference", "prompt"}
    repeated = sorted({f for f in fields if fields.count(f) > 1} - unknown)
    if missing or unknown or repeated:
        raise ConfigError(
            f"`teacher_template` must contain the placeholders {{reference}} and {{prompt}} once each and no others; "
            f"missing: {sorted(missing)}, unknown: {sorted(unknown)}, repeated: {repeated}. Got: {template!r}"
        )


def render_teacher_text(template: str, *, reference: str, prompt: str) -> str:
    """Fill the template's `{reference}` and `{prompt}` once (`templates.fill_template`: text in the data is never
    scanned, so a reference containing `{prompt}` stays as written)."""
    return fill_template(template, reference=reference, prompt=prompt)


def is_chat_messages(value: Any) -> bool:
    """A list of chat messages (dicts with a `role`)."""
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value)


@dataclass
class TeacherPrompt:
    """One row's teacher prompt.

    Attributes:
        ids (`list[int]`): the teacher prompt's token ids; the trainer appends the rollout's ids to them.
        reference_truncated (`bool`): the reference was cut from its end to fit the token budget.
        reference_tokens (`int`): how many of the reference's tokens the prompt kept.
        exact_boundary (`bool`): the question and everything after it are the student's own prompt ids (always true
            unless a chat template renders the prompt in a way that could not be aligned; see `build_teacher_prompt`).
    """

    ids: list[int]
    reference_truncated: bool
    exact_boundary: bool
    reference_tokens: int = 0


def prompt_length(labels: list[int]) -> int:
    """Number of prompt tokens of a tokenised row: the position of its first label that is not -100."""
    return next((i for i, label in enumerate(labels) if label != -100), len(labels))


def _tokens(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _join(tokenizer, space: str, ids: list[int]) -> list[int]:
    """`space` (carried horizontal whitespace) before fixed ids: merged into their first token when the tokenizer has
    a single leading-space token for it (`' ' + 'Question'` -> `'▁Question'`), so no lone space token is made."""
    if not space or not ids:
        return _tokens(tokenizer, space) + ids
    if tokenizer.convert_ids_to_tokens(ids[0]).startswith(_SPACE_MARKERS):
        return ids  # the first token already carries its space
    piece = tokenizer.decode(ids[:1])
    merged = _tokens(tokenizer, space + piece)
    if tokenizer.decode(merged) == space + piece:
        return merged + ids[1:]
    return _tokens(tokenizer, space) + ids


def _num_leading(prefix: list[int], ids: list[int]) -> int:
    """Length of the common prefix of two id lists."""
    n = 0
    while n < min(len(prefix), len(ids)) and prefix[n] == ids[n]:
        n += 1
    return n


def _locate_question(tokenizer, student_ids: list[int], prompt, chat_kwargs: dict) -> tuple[int, int] | None:
    """`(a, b)` with `student_ids[a:b]` the question's ids: the whole prompt after BOS for plain text, the content of
    the last user turn for conversations; `None` when a chat template's rendering cannot be aligned with the ids."""
    if not is_chat_messages(prompt):
        bos = tokenizer("", add_special_tokens=True)["input_ids"]
        return _num_leading(bos, student_ids), len(student_ids)
    last_user = max((i for i, m in enumerate(prompt) if m.get("role") == "user"), default=None)
    if last_user is None:
        return None
    messages = [dict(m) for m in prompt]
    question = str(messages[last_user]["content"])
    messages[last_user]["content"] = _SENTINEL
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **chat_kwargs)
    if rendered.count(_SENTINEL) != 1:
        return None
    before_text = rendered.split(_SENTINEL)[0]
    # The question's ends are token boundaries when the text up to each tokenises to a prefix of the student's ids.
    before_ids, through_question = _tokens(tokenizer, before_text), _tokens(tokenizer, before_text + question)
    if student_ids[: len(through_question)] != through_question or through_question[: len(before_ids)] != before_ids:
        return None
    return len(before_ids), len(through_question)


def _encode_part(tokenizer, part: str, reference: str) -> tuple[list[int], list[int], list | None]:
    """A template part (text around at most one `{reference}`) filled and tokenised as one string: `(ids, indices of
    the reference's tokens, character offsets of all ids or None)`, the indices found from the character offsets so
    that the reference can be cut (on a character boundary: `_cut_reference`)."""
    if REFERENCE_PLACEHOLDER not in part:
        return _tokens(tokenizer, part), [], None
    before, after = part.split(REFERENCE_PLACEHOLDER)
    text = before + reference + after
    if not text:
        return [], [], None
    if not getattr(tokenizer, "is_fast", False):  # no offsets: tokenise the three pieces apart
        ids = [_tokens(tokenizer, before), _tokens(tokenizer, reference), _tokens(tokenizer, after)]
        return ids[0] + ids[1] + ids[2], list(range(len(ids[0]), len(ids[0]) + len(ids[1]))), None
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    start, end = len(before), len(before) + len(reference)
    offsets = encoded["offset_mapping"]
    inside = [i for i, (a, b) in enumerate(offsets) if a < end and b > start and b <= end]
    return encoded["input_ids"], inside, offsets


def _whole_characters(tokenizer, ids: list[int], positions: list[int], offsets: list | None, keep: int) -> int:
    """The largest `n <= keep` such that the reference's first `n` tokens (`ids` at `positions`) end on a character
    boundary. Byte-level BPE (and SentencePiece's byte fallback) spreads one character (CJK, emoji) over several
    tokens; a cut between them would leave half a UTF-8 character, which decodes as U+FFFD. With offsets, the tokens
    of one character share its character span, so a cut splits a character when the next token starts before the
    last kept one ends; without offsets, when the kept tokens decode to text ending in U+FFFD."""
    while 0 < keep < len(positions):
        if offsets is not None:
            splits = offsets[positions[keep]][0] < offsets[positions[keep - 1]][1]
        else:
            splits = tokenizer.decode([ids[p] for p in positions[:keep]]).endswith("\ufffd")
        if not splits:
            break
        keep -= 1
    return keep


def build_teacher_prompt(
    tokenizer,
    student_prompt_ids: list[int],
    prompt: str | list[dict],
    reference: str,
    *,
    template: str = DEFAULT_TEACHER_TEMPLATE,
    max_length: int | None = None,
    chat_template_kwargs: dict | None = None,
) -> TeacherPrompt:
    """The teacher prompt for one row (module docstring: the rule and how it is kept).

    Args:
        tokenizer (`PreTrainedTokenizerBase`): the student's tokenizer.
        student_prompt_ids (`list[int]`): the ids the student samples after, i.e. the row's `input_ids` before its
            first label (TRL's tokenisation, after its prompt/completion boundary and truncation).
        prompt (`str` or `list[dict]`): the row's prompt (plain text, or chat messages ending with a user turn).
        reference (`str`): ŷ, the text the teacher sees as reference knowledge (surrounding whitespace dropped).
        template (`str`): `teacher_template` with `{reference}` and `{prompt}`. The text before `{prompt}` (with the
            reference) is tokenised as one string and goes before the question; text after `{prompt}` goes inside
            the last user turn for conversations and at the very end for plain text, which changes the boundary
            (`boundary_problem` reports it).
        max_length (`int`, *optional*): token budget; over it the reference is cut from its end, on a character
            boundary (never inside a character that spans several byte-level tokens). The question, the
            template text and the chat-template tokens are never cut (the result can then exceed `max_length`).
        chat_template_kwargs (`dict`, *optional*): what TRL passed to `apply_chat_template` for this row
            (`chat_template`, `tools`, the row's `chat_template_kwargs`).

    Returns:
        [`TeacherPrompt`].
    """
    chat_kwargs = chat_template_kwargs or {}
    located = _locate_question(tokenizer, student_prompt_ids, prompt, chat_kwargs)
    if located is None:
        return _rendered_teacher_prompt(
            tokenizer, student_prompt_ids, prompt, reference, template, max_length, chat_kwargs
        )
    a, b = located
    before_prompt, after_prompt = template.split(PROMPT_PLACEHOLDER)
    match = _TRAILING_SPACE.search(before_prompt)
    space = match.group() if match else ""  # carried into the question's first token
    reference = reference.strip()
    before_text = before_prompt[: len(before_prompt) - len(space)]
    before, before_reference, before_offsets = _encode_part(tokenizer, before_text, reference)
    after, after_reference, after_offsets = _encode_part(tokenizer, after_prompt, reference)
    head, tail = student_prompt_ids[:a], student_prompt_ids[b:]
    question = _join(tokenizer, space, student_prompt_ids[a:b])
    length = len(head) + len(before) + len(question) + len(after) + len(tail)
    excess = 0 if max_length is None else max(length - max_length, 0)
    truncated = excess > 0 and bool(before_reference or after_reference)
    kept = len(before_reference) + len(after_reference)
    if truncated:  # the reference is in one part only (`validate_teacher_template`)
        before, kept_before = _cut_reference(tokenizer, before, before_reference, before_offsets, excess)
        after, kept_after = _cut_reference(tokenizer, after, after_reference, after_offsets, excess)
        kept = kept_before + kept_after
    return TeacherPrompt(head + before + question + after + tail, truncated, True, kept)


def _cut_reference(
    tokenizer, ids: list[int], positions: list[int], offsets: list | None, count: int
) -> tuple[list[int], int]:
    """`ids` without at least the last `count` of the reference's tokens (at `positions`), cut on a character
    boundary (`_whole_characters`), and how many reference tokens are kept."""
    keep = _whole_characters(tokenizer, ids, positions, offsets, max(len(positions) - count, 0))
    dropped = set(positions[keep:])
    return [token for n, token in enumerate(ids) if n not in dropped], keep


def _rendered_teacher_prompt(tokenizer, student_ids, prompt, reference, template, max_length, chat_kwargs):
    """Fallback for chat templates that cannot be aligned token by token: the whole teacher conversation rendered and
    tokenised, its end cut as TRL cut the student's prompt (the `boundary_problem` check then compares the ends)."""
    last_user = max((i for i, m in enumerate(prompt) if m.get("role") == "user"), default=len(prompt) - 1)
    messages = [dict(m) for m in prompt]
    messages[last_user]["content"] = render_teacher_text(
        template, reference=_SENTINEL, prompt=str(messages[last_user]["content"])
    )
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **chat_kwargs)
    before, after = rendered.split(_SENTINEL, 1)
    reference_ids = _tokens(tokenizer, reference.strip())
    before_ids, after_ids = _tokens(tokenizer, before), _tokens(tokenizer, after)
    rendered_student = _tokens(
        tokenizer, tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True, **chat_kwargs)
    )
    cut = len(rendered_student) - len(student_ids) if rendered_student[: len(student_ids)] == student_ids else 0
    after_ids = after_ids[: len(after_ids) - cut] if cut > 0 else after_ids
    truncated = False
    if max_length is not None:
        budget = max(max_length - len(before_ids) - len(after_ids), 0)
        if len(reference_ids) > budget:
            budget = _whole_characters(tokenizer, reference_ids, list(range(len(reference_ids))), None, budget)
        truncated, reference_ids = len(reference_ids) > budget, reference_ids[:budget]
    return TeacherPrompt(before_ids + reference_ids + after_ids, truncated, False, len(reference_ids))


def boundary_problem(tokenizer, teacher_ids: list[int], student_ids: list[int], num_tokens: int = 3) -> str | None:
    """`None` when the teacher prompt ends on the student prompt's last `num_tokens` ids, else a description that
    names both endings (their last 10 tokens, decoded): the teacher would score the rollout after other tokens than
    the student wrote it after."""
    if teacher_ids[-num_tokens:] == student_ids[-num_tokens:]:
        return None
    return (
        f"the teacher prompt ends with {tokenizer.decode(teacher_ids[-10:])!r} but the student prompt with "
        f"{tokenizer.decode(student_ids[-10:])!r}"
    )


def add_teacher_prompt_ids(
    example: dict[str, Any], tokenizer, template: str, max_length: int | None, chat_template: str | None = None
) -> dict[str, Any]:
    """`Dataset.map` function over a row tokenised by TRL (`input_ids`, `labels`, `prompt`, `reference`, optional
    `tools` and `chat_template_kwargs`): `teacher_prompt_ids`, `reference_truncated`, `reference_tokens` and
    `teacher_boundary_problem` (`""` when the teacher prompt ends as the student's)."""
    student = list(example["input_ids"][: prompt_length(example["labels"])])
    tools = example.get("tools")
    kwargs = {
        "chat_template": chat_template,
        "tools": json.loads(tools) if isinstance(tools, str) else tools,
        **(example.get("chat_template_kwargs") or {}),
    }
    teacher = build_teacher_prompt(
        tokenizer,
        student,
        example["prompt"],
        example["reference"],
        template=template,
        max_length=max_length,
        chat_template_kwargs=kwargs,
    )
    problem = boundary_problem(tokenizer, teacher.ids, student)
    return {
        "teacher_prompt_ids": teacher.ids,
        "reference_truncated": teacher.reference_truncated,
        "reference_tokens": teacher.reference_tokens,
        "teacher_boundary_problem": problem or "",
    }


def model_context(config) -> int | None:
    """The number of positions a model takes (`max_position_embeddings` of its text config), `None` if unknown."""
    context = getattr(config.get_text_config(), "max_position_embeddings", None)
    return context if isinstance(context, int) and context > 0 else None


def context_overflow(
    dataset,
    dataset_name: str,
    *,
    completion_length: int,
    teacher_context: int | None,
    student_context: int | None,
    budget: int | None,
) -> str | None:
    """`None` when every row's teacher prompt and student prompt leave room for `completion_length` rollout tokens
    in the model's context, and its SFT row fits it, else the error message with the numbers and what to change.

    The teacher scores `[teacher prompt ⊕ z]` and the student samples z after its prompt, with z up to
    `max_completion_length` tokens; a longer row fails in the forward (an `IndexError` for learned positions) or runs
    on positions the model was never trained on. All rows of a map-style dataset are checked, the first row of an
    iterable one (rows are built as they are read)."""
    from datasets import Dataset

    if isinstance(dataset, Dataset):
        if "teacher_prompt_ids" not in dataset.column_names:
            return None
        wanted = ["teacher_prompt_ids", "reference_tokens", "input_ids", "labels"]
        columns = dataset.select_columns([c for c in wanted if c in dataset.column_names]).to_dict()
        rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
    else:
        rows = [row for row in [next(iter(dataset), None)] if row is not None and "teacher_prompt_ids" in row]
    # A tokenised dataset passed in may lack `reference_tokens` and `labels`: then the whole prompt counts as fixed.
    teacher = max((len(r["teacher_prompt_ids"]) for r in rows), default=0)
    fixed = max((len(r["teacher_prompt_ids"]) - r.get("reference_tokens", 0) for r in rows), default=0)
    student = max((prompt_length(r["labels"]) for r in rows if "labels" in r), default=0)
    sft = max((len(r["input_ids"]) for r in rows if "input_ids" in r), default=0)
    problems = []
    if teacher_context is not None and teacher + completion_length > teacher_context:
        room = teacher_context - completion_length
        if fixed <= room:
            fix = (
                f"set `max_teacher_prompt_length` to at most {room} (references are cut to fit, questions never), "
                "or lower `max_completion_length`"
            )
        else:
            fix = f"without the reference they take up to {fixed} tokens (questions are never cut): " + (
                f"lower `max_completion_length` to at most {teacher_context - fixed}, or shorten the questions"
                if fixed < teacher_context
                else "shorten the questions or the template"
            )
        problems.append(
            f"its teacher rows take up to {teacher} prompt tokens + `max_completion_length` ({completion_length}) = "
            f"{teacher + completion_length} tokens, more than the teacher model's context of {teacher_context} "
            f"positions (`max_position_embeddings`; the teacher prompt budget is "
            f"{'none' if budget is None else f'{budget} tokens'}: `max_teacher_prompt_length`, else `max_length`): "
            f"{fix}"
        )
    if student_context is not None and student + completion_length > student_context:
        problems.append(
            f"its student prompts take up to {student} tokens + `max_completion_length` ({completion_length}) = "
            f"{student + completion_length} tokens, more than the model's context of {student_context} positions: "
            f"lower `max_length` or `max_completion_length` so that a prompt and its rollout fit"
        )
    if student_context is not None and sft > student_context:
        problems.append(
            f"its SFT rows (prompt ⊕ answer) take up to {sft} tokens, more than the model's context of "
            f"{student_context} positions: set `max_length` to at most {student_context}"
        )
    if not problems:
        return None
    return f"The {dataset_name} dataset does not fit the model's context: " + "; and ".join(problems) + "."
