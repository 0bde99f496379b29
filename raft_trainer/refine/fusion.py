"""Answer fusion with multi-judge selection: a (usually stronger) model merges y and ỹ for up to N rounds, each judge
scores every candidate on a 0–1 rubric, the best mean is kept, and fusion stops once a mean reaches the stop score."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from statistics import mean

from ..backends import GenerationBackend, SamplingSettings, strip_reasoning
from ..prompt_files import PromptTemplate

RETRY_TEMPERATURE = 0.7  # sampling temperature of a judge asked again after an unreadable reply
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_SCALED = rf"({_NUMBER})\s*(?:/\s*(10|100)\b|(%))?"
_SCORE_STATEMENT = re.compile(rf"\bscore\b\s*(?:\([^)]*\))?\s*(?:is|[:=])\s*{_SCALED}", re.IGNORECASE)
_ANY_NUMBER = re.compile(_SCALED)


def parse_judge_score(text: str) -> float | None:
    """A 0–1 score from a judge's reply, or `None` when the reply does not state one (recorded, never raised).

    The rule, in order (docs/refinement.md, "Judge replies"):
    1. reasoning blocks are removed by `backends.strip_reasoning` (`<think>…</think>`, also `<thinking>` and
       `<reasoning>`, one left unclosed, or everything before a lone closing tag);
    2. a JSON object `{"score": x}` gives x;
    3. else the **last** score statement counts: `Score: x`, `score = x`, `Score (0 to 1): x`, `final score is x`;
    4. else a reply holding exactly one number gives that number (`"0.9"`, `"I would say 9/10."`);
    5. anything else (no number, or several numbers and no score statement, e.g. a numbered list) is unreadable.
    `x/10`, `x/100` and `x%` are rescaled; a value outside [0, 1] is unreadable, not clipped.

    ```python
    >>> [parse_judge_score(t) for t in ["0.9", '{"score": 0.75}', "Score: 8/10", "80%", "great!", "7"]]
    [0.9, 0.75, 0.8, 0.8, None, None]
    >>> [parse_judge_score(t) for t in ["Score (0 to 1): 0.8", "1. correct\\n2. complete", "<think>0.1?</think> 0.9"]]
    [0.8, None, 0.9]

    ```
    """
    text = strip_reasoning(text)
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict):
        score = value.get("score")
        return (
            _in_range(float(score), "", "")
            if isinstance(score, (int, float)) and not isinstance(score, bool)
            else None
        )
    statements = list(_SCORE_STATEMENT.finditer(text))
    if statements:
        return _in_range(*statements[-1].groups())
    numbers = list(_ANY_NUMBER.finditer(text))
    return _in_range(*numbers[0].groups()) if len(numbers) == 1 else None


def _in_range(number, per: str | None, percent: str | None) -> float | None:
    scale = {"10": 10.0, "100": 100.0}.get(per or "", 100.0 if percent else 1.0)
    score = float(number) / scale
    return score if 0.0 <= score <= 1.0 else None


@dataclass
class Candidate:
    """One fused answer (reasoning blocks stripped) with each judge's score (`None`: unparseable reply, kept verbatim
    in `unparsed`). A candidate the fuser cut at the token limit (`truncated`) is not judged (`scores` empty), so it
    can never be selected."""

    text: str
    round: int
    scores: list[float | None]
    unparsed: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def mean_score(self) -> float | None:
        parsed = [s for s in self.scores if s is not None]
        return round(mean(parsed), 6) if parsed else None


@dataclass
class FusionResult:
    """The selected answer and how it was chosen; `fused` is `None` when no candidate got a readable score (a
    candidate cut at the token limit gets none)."""

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
    judge_retries: int = 1

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
            texts = [strip_reasoning(g.text) for g in fused]
            judged = [k for k, g in enumerate(fused) if not g.truncated]  # a half answer is never a candidate
            judge_prompts = [
                self.judge_prompt.render(question=questions[active[k]], answer=golds[active[k]], candidate=texts[k])
                for k in judged
            ]
            verdicts = [self._judge(judge, judge_prompts, seed * 1000 + round_index) for judge in self.judges]
            verdicts_of = {k: [v[j] for v in verdicts] for j, k in enumerate(judged)}
            for k, i in enumerate(active):
                replies = verdicts_of.get(k, [])
                scores = [parse_judge_score(r.text) if texts[k] else None for r in replies]
                unparsed = [r.text for r, s in zip(replies, scores) if s is None]
                candidate = Candidate(texts[k], round_index + 1, scores, unparsed, truncated=fused[k].truncated)
                results[i].candidates.append(candidate)
                results[i].tokens["fusion"] += fused[k].num_tokens
                results[i].tokens["judge"] += sum(r.num_tokens for r in replies)
            active = [i for i in active if not _reached(results[i], self.stop_score)]
        for result in results:
            result.fused = result.best.text if result.best else None
        return results

    def _judge(self, judge: GenerationBackend, prompts: list[str], seed: int) -> list:
        """One judge's replies; a reply without a readable score is asked again up to `judge_retries` times, sampled
        at temperature `RETRY_TEMPERATURE` with a new seed (a greedy judge would repeat the same reply). Token counts
        add up over the attempts; the last reply is the one recorded."""
        if not prompts:  # every candidate of the round was cut at the token limit
            return []
        replies = judge.generate(prompts, self.judge_settings)
        for attempt in range(1, self.judge_retries + 1):
            unread = [k for k, r in enumerate(replies) if parse_judge_score(r.text) is None]
            if not unread:
                break
            temperature = max(self.judge_settings.temperature, RETRY_TEMPERATURE)
            settings = replace(self.judge_settings, temperature=temperature, seed=seed * 100 + attempt)
            again = judge.generate([prompts[k] for k in unread], settings)
            for k, reply in zip(unread, again):
                again_tokens = reply.num_tokens + replies[k].num_tokens
                replies[k] = replace(reply, num_tokens=again_tokens)
        return replies


def _reached(result: FusionResult, stop_score: float) -> bool:
    best = result.best
    return best is not None and best.mean_score >= stop_score


def _with_seed(settings: SamplingSettings, seed: int) -> SamplingSettings:
    return replace(settings, seed=seed)
