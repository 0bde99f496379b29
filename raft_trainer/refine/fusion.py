"""Answer fusion with multi-judge selection: a (usually stronger) model merges y and ỹ for up to N rounds, each judge
scores every candidate on a 0–1 rubric, the best mean is kept, and fusion stops once a mean reaches the stop score."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from statistics import mean

from ..backends import GenerationBackend, SamplingSettings
from .prompts import PromptTemplate

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"


def parse_judge_score(text: str) -> float | None:
    """A 0–1 score from a judge's reply, or `None` when none can be read (recorded, never raised).

    Accepts a bare number, `{"score": x}`, `Score: x`, `x/10`, `x/100` and `x%`; the first number found counts.

    ```python
    >>> [parse_judge_score(t) for t in ["0.9", '{"score": 0.75}', "Score: 8/10", "80%", "1", "great!", "7"]]
    [0.9, 0.75, 0.8, 0.8, 1.0, None, None]

    ```
    """
    text = text.strip()
    try:
        value = json.loads(text)
        if isinstance(value, dict) and isinstance(value.get("score"), (int, float)):
            text = str(value["score"])
    except ValueError:
        pass
    match = re.search(rf"({_NUMBER})\s*(/\s*(10|100)\b|%)?", text)
    if match is None:
        return None
    number = float(match.group(1))
    scale = {"10": 10.0, "100": 100.0}.get(match.group(3) or "", 100.0 if match.group(2) == "%" else 1.0)
    score = number / scale
    return score if 0.0 <= score <= 1.0 else None


@dataclass
class Candidate:
    """One fused answer with each judge's score (`None`: unparseable reply, kept verbatim in `unparsed`)."""

    text: str
    round: int
    scores: list[float | None]
    unparsed: list[str] = field(default_factory=list)

    @property
    def mean_score(self) -> float | None:
        parsed = [s for s in self.scores if s is not None]
        return round(mean(parsed), 6) if parsed else None


@dataclass
class FusionResult:
    """The selected answer and how it was chosen; `fused` is `None` when no candidate got a readable score."""

    candidates: list[Candidate]
    fused: str | None
    tokens: dict[str, int]

    @property
    def best(self) -> Candidate | None:
        scored = [c for c in self.candidates if c.mean_score is not None and c.text]
        return max(scored, key=lambda c: c.mean_score) if scored else None


@dataclass
class FusionStep:
    """The fuser, the judges and their prompts and sampling settings."""

    fuser: GenerationBackend
    judges: list[GenerationBackend]
    fusion_prompt: PromptTemplate
    judge_prompt: PromptTemplate
    fusion_settings: SamplingSettings
    judge_settings: SamplingSettings
    rounds: int = 3
    stop_score: float = 0.8

    def __call__(self, questions: list[str], golds: list[str], rewrites: list[str], seed: int) -> list[FusionResult]:
        """Fuse each (question, gold, rewrite) triple; rows that reached the stop score drop out of later rounds."""
        results = [FusionResult([], None, {"fusion": 0, "judge": 0}) for _ in questions]
        active = list(range(len(questions)))
        for round_index in range(self.rounds):
            if not active:
                break
            prompts = [
                self.fusion_prompt.render(question=questions[i], answer=golds[i], rewrite=rewrites[i]) for i in active
            ]
            settings = _with_seed(self.fusion_settings, seed * 1000 + round_index)
            fused = self.fuser.generate(prompts, settings)
            judge_prompts = [
                self.judge_prompt.render(question=questions[i], answer=golds[i], candidate=g.text)
                for i, g in zip(active, fused)
            ]
            verdicts = [judge.generate(judge_prompts, self.judge_settings) for judge in self.judges]
            for k, i in enumerate(active):
                replies = [v[k] for v in verdicts]
                scores = [parse_judge_score(r.text) if fused[k].text else None for r in replies]
                unparsed = [r.text for r, s in zip(replies, scores) if s is None]
                results[i].candidates.append(Candidate(fused[k].text, round_index + 1, scores, unparsed))
                results[i].tokens["fusion"] += fused[k].num_tokens
                results[i].tokens["judge"] += sum(r.num_tokens for r in replies)
            active = [i for i in active if not _reached(results[i], self.stop_score)]
        for result in results:
            result.fused = result.best.text if result.best else None
        return results


def _reached(result: FusionResult, stop_score: float) -> bool:
    best = result.best
    return best is not None and best.mean_score >= stop_score


def _with_seed(settings: SamplingSettings, seed: int) -> SamplingSettings:
    from dataclasses import replace

    return replace(settings, seed=seed)
