"""General probes: few-shot questions with short verifiable answers (knowledge, arithmetic, simple reasoning) that a
base model answers; plus the bundled evaluation files and how to read them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..backends import strip_reasoning
from .domain import normalize_answer

FEW_SHOT = (
    "Answer each question with a short answer.\n\n"
    "Q: What is the capital of Canada?\nA: Ottawa\n\n"
    "Q: What is 3 + 4?\nA: 7\n\n"
    "Q: What colour is a clear daytime sky?\nA: Blue\n\n"
)


def bundled(name: str) -> str:
    """Path of a file shipped in `raft_trainer/eval/data/`."""
    return str(resources.files("raft_trainer.eval") / "data" / name)


def read_paragraphs(path: str) -> list[str]:
    """Blank-line-separated paragraphs of a UTF-8 text file. Raises `ValueError` naming a file that is not UTF-8."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"The text file {path!r} is not UTF-8 ({error.reason} at byte {error.start}).") from None
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def probe_prompt(question: str) -> str:
    """The few-shot prompt for one probe (plain text: base and chat models alike answer after `A:`)."""
    return f"{FEW_SHOT}Q: {question}\nA:"


def probe_correct(response: str, answer: str, aliases: list[str] | None = None) -> bool:
    """The answer or an alias appears, as whole words, in the first line of the response (after normalisation), so
    "Paris." and "The capital of France is Paris." both count: a fine-tuned model's answer style is not forgetting.
    The first line is read after the response's reasoning blocks are removed (`strip_reasoning`).

    ```python
    >>> probe_correct(" Paris.\\nQ: next", "Paris"), probe_correct("Tokyo, Japan", "Kyoto"), probe_correct("4", "four", ["4"])
    (True, False, True)
    >>> probe_correct("The largest ocean is the Pacific Ocean.", "Pacific Ocean"), probe_correct("10000000000", "10")
    (True, False)
    >>> probe_correct("<think>\\nKyoto? No.\\n</think>\\nTokyo", "Tokyo"), probe_correct("<think>Kyoto</think> Osaka", "Kyoto")
    (True, False)

    ```
    """
    first_line = strip_reasoning(response).split("\n", 1)[0]
    first = f" {normalize_answer(first_line)} "
    targets = [normalize_answer(t) for t in [answer, *(aliases or [])]]
    return any(t and f" {t} " in first for t in targets)
