"""Prompt template files of refine (rewrite, fusion, judge) and eval (domain judge): the bundled defaults
(`refine/prompts/*.txt`, `eval/prompts/*.txt`) or the user's files, checked for their placeholders, each with a version
(file stem + content hash) that refine records in every row's provenance."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .templates import fill_template

REQUIRED_FIELDS = {
    "rewrite": ("{question}", "{answer}"),
    "fusion": ("{question}", "{answer}", "{rewrite}"),
    "judge": ("{question}", "{answer}", "{candidate}"),
    "domain_judge": ("{question}", "{answer}", "{candidate}"),
}
BUNDLED_IN = {
    "rewrite": "raft_trainer.refine",
    "fusion": "raft_trainer.refine",
    "judge": "raft_trainer.refine",
    "domain_judge": "raft_trainer.eval",
}


@dataclass(frozen=True)
class PromptTemplate:
    """A template whose `{field}` placeholders are filled once, from the template only (`templates.fill_template`:
    braces and placeholder names inside the data stay as written)."""

    role: str
    text: str
    version: str

    def render(self, **values: str) -> str:
        return fill_template(self.text, **values)


def load_prompt(role: str, path: str | None = None) -> PromptTemplate:
    """The `role` template (`rewrite`, `fusion`, `judge`, `domain_judge`) from `path`, or the bundled default."""
    if path is None:
        source = resources.files(BUNDLED_IN[role]) / "prompts" / f"{role}.txt"
        text, stem = source.read_text(encoding="utf-8"), role
    else:
        text, stem = Path(path).read_text(encoding="utf-8"), Path(path).stem
    missing = [f for f in REQUIRED_FIELDS[role] if f not in text]
    if missing:
        raise ValueError(f"The {role} prompt {path or '(bundled)'} lacks the placeholders {missing}.")
    text = text.rstrip("\n")  # the cue line ("Score (0 to 1):") must end the prompt
    return PromptTemplate(role, text, f"{stem}@{hashlib.sha256(text.encode()).hexdigest()[:8]}")
