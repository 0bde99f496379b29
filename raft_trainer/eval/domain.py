"""Domain accuracy on held-out QA: normalised exact match, token F1, and an LLM-judge verdict by majority vote."""

from __future__ import annotations

import re
import string
from collections import Counter

from ..backends import strip_reasoning

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces.

    ```python
    >>> normalize_answer("The  Capital is PARIS!")
    'capital is paris'

    ```
    """
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(_ARTICLES.sub(" ", text).split())


def contains_answer(text: str, accepted: list[str], *, case_sensitive: bool = False) -> bool:
    """An accepted answer appears in `text` as a whole word (or phrase): not inside a longer word.

    ```python
    >>> contains_answer("The capital of Kenya is Nairobi.", ["Nairobi"]), contains_answer("Na is sodium", ["Na"])
    (True, True)
    >>> contains_answer("nairobian", ["Nairobi"]), contains_answer("na", ["Na"], case_sensitive=True)
    (False, False)

    ```
    """
    flags = 0 if case_sensitive else re.IGNORECASE
    return any(
        a.strip() and re.search(r"(?<!\w)" + re.escape(a.strip()) + r"(?!\w)", text, flags=flags) for a in accepted
    )


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised texts are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Harmonic mean of token precision and recall after normalisation (SQuAD F1).

    ```python
    >>> round(token_f1("Paris is the capital", "The capital of France is Paris"), 4)
    0.75

    ```
    """
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def parse_verdict(text: str) -> bool | None:
    """A judge's yes/no (correct/incorrect) verdict, read after its reasoning blocks (`strip_reasoning`); `None` when
    it gives neither.

    ```python
    >>> [parse_verdict(t) for t in ["Yes.", "no, it is wrong", "CORRECT", "Incorrect", "maybe"]]
    [True, False, True, False, None]
    >>> parse_verdict("<think>No typo? Right.</think> Incorrect")
    False

    ```
    """
    words = re.findall(r"[a-z]+", strip_reasoning(text).lower())
    first = next(
        (w for w in words if w in {"yes", "no", "correct", "incorrect", "true", "false", "wrong", "right"}), None
    )
    return None if first is None else first in {"yes", "correct", "true", "right"}


def majority_vote(verdicts: list[bool | None]) -> bool | None:
    """Correct when more readable verdicts say yes than no; a tie is incorrect; `None` when none is readable."""
    readable = [v for v in verdicts if v is not None]
    if not readable:
        return None
    return sum(readable) > len(readable) - sum(readable)
