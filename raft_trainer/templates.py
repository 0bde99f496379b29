"""Filling `{name}` placeholders in prompt templates, once, from the template only (Stage 1, eval, the teacher)."""

from __future__ import annotations

import re

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
DEFAULT_PLAIN_PROMPT = "Question: {question}\nAnswer:"  # question/answer rows for models without a chat template


def fill_template(template: str, **values: str) -> str:
    """Replace each `{name}` of `template` whose name is in `values`, in one pass over the template.

    Text inside the values is never scanned: a question that contains `{answer}` or `{reference}` stays as written
    (sequential `str.replace` calls would paste the gold answer into it). Braces that name no value stay as they are,
    so JSON examples in a template survive; `str.format` would raise on them.

    ```python
    >>> fill_template("Q: {question}\\nA: {answer}", question="What is {answer}?", answer="42")
    'Q: What is {answer}?\\nA: 42'
    >>> fill_template('Reply as {"score": x}. {question}', question="Why?")
    'Reply as {"score": x}. Why?'

    ```
    """
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)] if m.group(1) in values else m.group(0), template)
