"""IFEval-style verifiable instruction following, offline: a subset of IFEval's checks (same instruction ids and
keyword arguments as `google/IFEval`), written here because lm-eval's implementation downloads NLTK data at run time.
Words are counted with a regex, sentences are not used; ids outside the subset are reported as unsupported."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

_WORD = re.compile(r"\b\w+\b")


def _compare(count: int, relation: str, target: int) -> bool:
    return count < target if relation == "less than" else count >= target


def _number_words(text, relation="at least", num_words=0, **_):
    return _compare(len(_WORD.findall(text)), relation, num_words)


def _number_paragraphs(text, num_paragraphs=1, **_):
    paragraphs = [p for p in re.split(r"\s*\*\*\*\s*", text.strip()) if p.strip()]
    return len(paragraphs) == num_paragraphs


def _bullets(text, num_bullets=1, **_):
    return len(re.findall(r"^\s*[\*\-]\s", text, flags=re.M)) == num_bullets


def _json_format(text, **_):
    body = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _keywords(text, keywords=(), **_):
    return all(re.search(re.escape(k), text, flags=re.I) for k in keywords)


def _forbidden(text, forbidden_words=(), **_):
    return not any(re.search(r"\b" + re.escape(w) + r"\b", text, flags=re.I) for w in forbidden_words)


def _end_checker(text, end_phrase="", **_):
    return text.strip().lower().endswith(end_phrase.strip().lower())


def _postscript(text, postscript_marker="P.S.", **_):
    return re.search(r"\s*" + re.escape(postscript_marker.lower()) + r".*$", text.lower(), flags=re.M) is not None


def _keyword_frequency(text, keyword="", frequency=1, relation="at least", **_):
    count = len(re.findall(r"\b" + re.escape(keyword) + r"\b", text, flags=re.I))
    return _compare(count, relation, frequency)


CHECKS: dict[str, Callable[..., bool]] = {
    "punctuation:no_comma": lambda text, **_: "," not in text,
    "change_case:english_lowercase": lambda text, **_: text == text.lower() and any(c.isalpha() for c in text),
    "change_case:english_capital": lambda text, **_: text == text.upper() and any(c.isalpha() for c in text),
    "length_constraints:number_words": _number_words,
    "length_constraints:number_paragraphs": _number_paragraphs,
    "detectable_format:number_bullet_lists": _bullets,
    "detectable_format:title": lambda text, **_: re.search(r"<<[^\n]+>>", text) is not None,
    "detectable_format:json_format": _json_format,
    "keywords:existence": _keywords,
    "keywords:forbidden_words": _forbidden,
    "keywords:frequency": _keyword_frequency,
    "startend:end_checker": _end_checker,
    "startend:quotation": lambda text, **_: (
        len(text.strip()) > 1 and text.strip()[0] == '"' and text.strip()[-1] == '"'
    ),
    "detectable_content:postscript": _postscript,
}


def follows(response: str, instruction_id: str, kwargs: dict | None) -> bool | None:
    """Whether `response` satisfies one instruction; `None` for an instruction id outside the supported subset.

    ```python
    >>> follows("hello there, friend", "punctuation:no_comma", {}), follows("hi", "change_case:english_lowercase", {})
    (False, True)

    ```
    """
    check = CHECKS.get(instruction_id)
    if check is None:
        return None
    return bool(check(response, **{k: v for k, v in (kwargs or {}).items() if v is not None}))


def score_instructions(responses: list[str], examples: list[dict]) -> dict:
    """IFEval's strict prompt-level accuracy (every instruction of a prompt followed) and instruction-level accuracy,
    over the supported instructions; prompts with none supported are counted and left out."""
    prompt_hits, instruction_hits, unsupported, scored_prompts = [], [], 0, 0
    for response, example in zip(responses, examples):
        kwargs_list = example.get("kwargs") or [{}] * len(example["instruction_id_list"])
        results = [follows(response, i, k or {}) for i, k in zip(example["instruction_id_list"], kwargs_list)]
        unsupported += sum(r is None for r in results)
        results = [r for r in results if r is not None]
        if results:
            scored_prompts += 1
            prompt_hits.append(all(results))
            instruction_hits.extend(results)
    return {
        "prompt_accuracy": sum(prompt_hits) / len(prompt_hits) if prompt_hits else None,
        "instruction_accuracy": sum(instruction_hits) / len(instruction_hits) if instruction_hits else None,
        "prompts_scored": scored_prompts,
        "instructions_unsupported": unsupported,
    }
