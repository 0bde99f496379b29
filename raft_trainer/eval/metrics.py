"""The metrics of `raft eval` and `raft lab`, one registry entry each.

A metric is a `Metric`: its name (what `--metrics` selects), a function that scores one model, the report keys that
enter **retention** with their direction (general ability: checkpoint ÷ base, or base ÷ checkpoint when lower is
better) or **domain gain** (vs the baseline), and whether it needs local weights. The runner loops over the selected
metrics and the report reads the directions from here, so a new metric is one `register(Metric(...))`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from statistics import mean
from typing import TYPE_CHECKING, Any

from ..backends import Generation, GenerationBackend, SamplingSettings, strip_reasoning
from ..backends.local import TransformersBackend
from ..data import qa_prompt
from ..errors import MissingPackageError
from ..prompt_files import load_prompt
from .domain import contains_answer, exact_match, majority_vote, parse_verdict, token_f1
from .instructions import score_instructions
from .likelihood import drift_kl, eval_mode, perplexity
from .probes import probe_correct, probe_prompt

if TYPE_CHECKING:
    from .config import EvalConfig
    from .runner import EvalData


@dataclass
class ScoringContext:
    """What a metric may read when it scores `model`: the base model, the evaluation sets, the options, the judges."""

    model: GenerationBackend
    base: GenerationBackend
    data: EvalData
    config: EvalConfig
    judges: list[GenerationBackend] = field(default_factory=list)


@dataclass(frozen=True)
class Metric:
    """One metric of `raft eval`.

    Args:
        name (`str`): the name `--metrics` selects.
        score (`Callable[[ScoringContext], dict]`): scores one model; returns `{report key: value}` (may be empty
            when its data is missing).
        retained (`Mapping[str, bool]`, or a function of the report keys that returns one): report keys that are
            general ability, each with `True` when higher is better; each enters `retention` (and its mean, the
            x-axis of the trade-off plot).
        domain_keys (`tuple[str, ...]`): report keys that are domain scores; each gets a `domain_gain` vs the
            baseline, and the first one present is the y-axis of the plot.
        needs_local_weights (`bool`): scored only when the model and the base are local `transformers` models.
        description (`str`): one line for `--help` and the docs.
    """

    name: str
    score: Callable[[ScoringContext], dict[str, Any]]
    retained: Mapping[str, bool] | Callable[[Iterable[str]], Mapping[str, bool]] = field(default_factory=dict)
    domain_keys: tuple[str, ...] = ()
    needs_local_weights: bool = False
    description: str = ""

    def retained_keys(self, keys: Iterable[str] = ()) -> Mapping[str, bool]:
        """The general-ability keys with their direction; a metric whose keys depend on what ran (lm-eval tasks)
        gives `retained` as a function of the report keys."""
        return self.retained(keys) if callable(self.retained) else self.retained


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add `metric` to the registry (a name used twice is refused)."""
    if metric.name in METRICS:
        raise ValueError(f"a metric named {metric.name!r} is already registered")
    METRICS[metric.name] = metric
    return metric


def retention_directions(keys: Iterable[str] = ()) -> dict[str, bool]:
    """`{report key: higher is better}` of every registered metric's general-ability keys (given the report's
    `keys`, for metrics whose keys depend on what ran)."""
    keys = list(keys)
    return {key: higher for metric in METRICS.values() for key, higher in metric.retained_keys(keys).items()}


def domain_keys() -> tuple[str, ...]:
    """Every registered metric's domain keys, in registration order."""
    return tuple(key for metric in METRICS.values() for key in metric.domain_keys)


def score_model(
    model: GenerationBackend, base: GenerationBackend, data: EvalData, config: EvalConfig, judges=()
) -> dict:
    """Every metric of `config.metrics` for one model (those that need local weights only when both `model` and
    `base` are local `transformers` models)."""
    context = ScoringContext(model, base, data, config, list(judges))
    local = isinstance(model, TransformersBackend) and isinstance(base, TransformersBackend)
    scores = {}
    for name in config.metrics:
        metric = METRICS[name]
        if local or not metric.needs_local_weights:
            scores.update(metric.score(context))
    return scores


# ---------------------------------------------------------------------------------------------- the metrics
def answers_of(replies: list[Generation]) -> list[str]:
    """The texts every generation metric scores: each reply with its reasoning blocks removed (`strip_reasoning`, as
    lm-eval's `think_end_token` and IFEval's checker do), so a reasoning trace earns no credit and costs none."""
    return [strip_reasoning(r.text) for r in replies]


def domain_scores(
    model: GenerationBackend, data: EvalData, judges: list[GenerationBackend], config: EvalConfig
) -> dict:
    """Accuracy (the gold answer or an alias appears as a whole word), exact match and token F1 against the gold
    answers, and the judges' majority verdict."""
    if not data.domain_rows:
        return {}
    settings = SamplingSettings(config.max_new_tokens, stop=tuple(config.stop_sequences))
    answers = answers_of(model.generate([r.prompt for r in data.domain_rows], settings))
    golds = [r.answer for r in data.domain_rows]
    hits = [
        contains_answer(a, [r.answer, *r.aliases], case_sensitive=config.case_sensitive)
        for a, r in zip(answers, data.domain_rows)
    ]
    scores = {
        "domain_accuracy": float(mean(hits)),
        "domain_exact_match": mean(map(exact_match, answers, golds)),
        "domain_f1": mean(map(token_f1, answers, golds)),
    }
    if judges:
        items = [(r.question, r.answer) for r in data.domain_rows]
        accuracy, unreadable = judged_accuracy(judges, items, answers, config)
        scores["domain_judge_accuracy"], scores["domain_judge_unreadable"] = accuracy, unreadable
    return scores


def judged_accuracy(
    judges: list[GenerationBackend], items: list[tuple[str, str]], answers: list[str], config: EvalConfig
) -> tuple[float | None, int]:
    """The judges' majority verdict on each `answer` to `(question, reference)`: (share judged correct among the
    answers with a readable vote, number of answers without one). Each judge reads the judge prompt
    (`--judge_prompt_file`, default the bundled `domain_judge.txt`) greedily; a tie counts as incorrect."""
    template = load_prompt("domain_judge", config.judge_prompt_file)
    prompts = [template.render(question=q, answer=ref, candidate=a) for (q, ref), a in zip(items, answers)]
    settings = SamplingSettings(8, stop=("\n",) if config.stop_sequences else ())
    verdicts = [[parse_verdict(g.text) for g in judge.generate(prompts, settings)] for judge in judges]
    votes = [majority_vote(list(v)) for v in zip(*verdicts)]
    readable = [v for v in votes if v is not None]
    return (float(mean(readable)) if readable else None), len(votes) - len(readable)


def general_judged_scores(context: ScoringContext) -> dict:
    """Open general questions answered zero-shot and judged against their reference by the majority of
    `--judge_models` (the paper's LLM-judged MS-Bench role): `general_judge_accuracy` and the unreadable count."""
    rows, config = context.data.general_qa, context.config
    if not (rows and context.judges):
        return {}
    output_format = context.data.output_format
    prompts = [qa_prompt(r["question"], output_format, config.plain_prompt_template)[0] for r in rows]
    settings = SamplingSettings(config.max_new_tokens, stop=tuple(config.stop_sequences))
    answers = answers_of(context.model.generate(prompts, settings))
    items = [(r["question"], r["answer"]) for r in rows]
    accuracy, unreadable = judged_accuracy(context.judges, items, answers, config)
    return {"general_judge_accuracy": accuracy, "general_judge_unreadable": unreadable}


def probe_hits(model: GenerationBackend, probes: list[dict]) -> list[bool]:
    """Whether each few-shot probe is answered correctly (greedy, 12 tokens, first line; `probes.probe_correct`)."""
    replies = model.generate([probe_prompt(p["question"]) for p in probes], SamplingSettings(12, stop=("\n",)))
    return [probe_correct(r.text, p["answer"], p.get("aliases")) for r, p in zip(replies, probes)]


def probe_scores(context: ScoringContext) -> dict:
    """Few-shot probe accuracy, overall and per category."""
    probes = context.data.probes
    if not probes:
        return {}
    hits = probe_hits(context.model, probes)
    scores = {"probe_accuracy": float(mean(hits))}
    for category in sorted({p.get("category", "general") for p in probes}):
        picked = [h for h, p in zip(hits, probes) if p.get("category", "general") == category]
        scores[f"probe_accuracy/{category}"] = float(mean(picked))
    return scores


def ifeval_scores(context: ScoringContext) -> dict:
    """IFEval's prompt- and instruction-level accuracy, strict and loose (the upstream checkers, `instructions.py`)."""
    rows = context.data.ifeval
    if not rows:
        return {}
    settings = SamplingSettings(context.config.ifeval_max_new_tokens)
    replies = context.model.generate([e["prompt"] for e in rows], settings)
    return {f"ifeval_{k}": v for k, v in score_instructions(answers_of(replies), rows).items()}


def perplexity_scores(context: ScoringContext) -> dict:
    """exp(mean token NLL) on the held-out general text."""
    model, text = context.model, context.data.general_text
    if not text:
        return {}
    with eval_mode(model.model):
        return {"perplexity": perplexity(model.model, model.tokenizer, text, max_length=context.config.max_length)}


def drift_scores(context: ScoringContext) -> dict:
    """Mean per-token KL(base ‖ model) on the general text and the probe prompts (0 for the base itself)."""
    model, base, data = context.model, context.base, context.data
    if model is base:
        return {"drift_kl": 0.0}
    texts = data.general_text + [probe_prompt(p["question"]) for p in data.probes]
    with eval_mode(model.model, base.model):
        kl = drift_kl(model.model, base.model, model.tokenizer, texts, max_length=context.config.max_length)
    return {"drift_kl": kl}


register(
    Metric(
        "domain",
        lambda c: domain_scores(c.model, c.data, c.judges, c.config),
        domain_keys=("domain_accuracy", "domain_judge_accuracy", "domain_f1", "domain_exact_match"),
        description="accuracy, exact match, token F1 and judged accuracy on the held-out domain questions",
    )
)
register(
    Metric(
        "probes",
        probe_scores,
        retained={"probe_accuracy": True},
        description="3-shot general probes (knowledge, arithmetic, reasoning)",
    )
)
register(
    Metric(
        "general_judged",
        general_judged_scores,
        retained={"general_judge_accuracy": True},
        description="open general questions judged against references by --judge_models (majority vote)",
    )
)
register(
    Metric(
        "ifeval",
        ifeval_scores,
        retained={"ifeval_prompt_level_strict_acc": True, "ifeval_inst_level_strict_acc": True},
        description="IFEval's verifiable instructions (upstream checkers), prompt- and instruction-level, strict and loose",
    )
)
register(
    Metric(
        "perplexity",
        perplexity_scores,
        retained={"perplexity": False},
        needs_local_weights=True,
        description="perplexity on held-out general text",
    )
)
register(
    Metric(
        "drift",
        drift_scores,
        needs_local_weights=True,
        description="KL(base ‖ model) on general text and probe prompts",
    )
)


# ------------------------------------------------------------------------------------------- lm-eval bridge
LM_EVAL_LOWER_IS_BETTER = ("perplexity", "bits_per_byte", "byte_perplexity", "word_perplexity")


def lm_eval_scores(context: ScoringContext) -> dict:
    """The lm-evaluation-harness tasks of `--lm_eval_tasks` on this model, as `lm_eval/<task>/<metric>` (standard
    errors and aliases left out; a metric with a filter other than `none` keeps it as `<metric>,<filter>`).

    `lm_eval.simple_evaluate` runs on the weights already loaded (lm-eval's `HFLM`), or, with `--lm_eval_model`
    (e.g. `vllm`), on lm-eval's model of that type loading the checkpoint from its path with `--lm_eval_model_args`.

    Raises:
        MissingPackageError: lm-eval (or the model type's own package, such as vllm) is not installed.
    """
    config, model = context.config, context.model
    if not config.lm_eval_tasks:
        return {}
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as error:
        raise MissingPackageError("--lm_eval_tasks needs lm-eval: pip install lm-eval") from error
    if config.lm_eval_model:
        harness_model = config.lm_eval_model
        model_args = ",".join(arg for arg in (f"pretrained={model.name}", config.lm_eval_model_args) if arg)
    else:
        harness_model = HFLM(pretrained=model.model, tokenizer=model.tokenizer, batch_size=config.lm_eval_batch_size)
        model_args = None
    with eval_mode(model.model):
        try:
            results = lm_eval.simple_evaluate(
                model=harness_model,
                model_args=model_args,
                batch_size=config.lm_eval_batch_size if config.lm_eval_model else None,
                tasks=list(config.lm_eval_tasks),
                num_fewshot=config.lm_eval_num_fewshot,
                limit=config.limit,
                task_manager=TaskManager(include_path=config.lm_eval_include_path),
                log_samples=False,
            )
        except ModuleNotFoundError as error:  # the model type's package, e.g. vllm
            if not config.lm_eval_model:
                raise
            raise MissingPackageError(
                f"--lm_eval_model {config.lm_eval_model} needs the package {error.name!r}: pip install {error.name}"
            ) from error
    scores = {}
    for task, values in results["results"].items():
        for key, value in values.items():
            name, _, filter_name = key.partition(",")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and "_stderr" not in name:
                scores[f"lm_eval/{task}/{name if filter_name in ('', 'none') else key}"] = float(value)
    return scores


def lm_eval_directions(keys: Iterable[str]) -> dict[str, bool]:
    """Every `lm_eval/...` key is general ability: higher is better except perplexity-like metrics."""
    return {
        key: not any(key.rsplit("/", 1)[-1].startswith(low) for low in LM_EVAL_LOWER_IS_BETTER)
        for key in keys
        if key.startswith("lm_eval/")
    }


register(
    Metric(
        "lm_eval",
        lm_eval_scores,
        retained=lm_eval_directions,
        needs_local_weights=True,
        description="lm-evaluation-harness tasks of --lm_eval_tasks (ifeval, mmlu, ...), needs lm-eval",
    )
)
