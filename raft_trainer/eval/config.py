"""`EvalConfig`: every option of `raft eval` (flags and YAML keys), documented once in each field's help."""

from __future__ import annotations

from dataclasses import dataclass

from ..backends import BackendArguments, decode_escapes
from ..options import option
from ..qa_rows import QADataArguments

METRICS = ("domain", "probes", "ifeval", "perplexity", "drift")


@dataclass
class EvalConfig(BackendArguments, QADataArguments):
    """Both sides of the trade-off for one or several checkpoints and the base model, side by side.

    Each field's `help` is its documentation (`raft eval --help`, `docs/evaluation.md`).
    """

    models: list[str] = option(
        "Checkpoints to score, as name=path (or a path; its folder name is the name).", default_factory=list
    )
    base_model: str | None = option(
        "The original model, scored as 'base' (default: the embedded Gemma 3 270M).", default=None
    )
    baseline: str | None = option(
        "Name of the model domain gains are relative to (e.g. sft); default: base.", default=None
    )
    metrics: list[str] = option(f"Metrics to run, among {', '.join(METRICS)}.", default_factory=lambda: list(METRICS))
    limit: int | None = option("Use only the first N items of every evaluation set (quick runs).", default=None)
    output_dir: str = option(
        "Folder for eval_results.json, eval_results.md and eval_tradeoff.png.", default="runs/eval"
    )
    plot: bool = option("Plot domain accuracy against mean general retention (needs matplotlib).", default=True)

    # > Domain accuracy
    domain_dataset: str | None = option(
        "Held-out domain QA file or dataset name (default: the bundled example).", default=None
    )
    judge_models: list[str] = option(
        "LLM judges (backend specs); majority vote per answer. Empty: no judge.", default_factory=list
    )
    judge_prompt_file: str | None = option("Judge prompt file (default: bundled domain_judge.txt).", default=None)
    case_sensitive: bool = option(
        "domain_accuracy: match the gold answer and its aliases case-sensitively (codes, symbols).", default=False
    )
    max_new_tokens: int = option("Token cap of a domain answer.", default=128)
    stop_sequences: list[str] = option(
        "Answers are cut before the first of these (base models keep writing otherwise). Empty: rely on EOS.",
        default_factory=lambda: ["\nQuestion:", "\n\n\n"],
    )

    # > General ability
    ifeval_dataset: str | None = option(
        "IFEval-format prompts: a JSONL file or a dataset name such as google/IFEval (default: bundled 20).",
        default=None,
    )
    ifeval_max_new_tokens: int = option("Token cap of an IFEval response.", default=256)
    probes_file: str | None = option(
        "General probes JSONL (question, answer, aliases, category); default: bundled 28.", default=None
    )
    general_text_file: str | None = option(
        "Held-out general text for perplexity and drift (paragraphs); default: bundled.", default=None
    )
    max_length: int = option("Tokens per paragraph for perplexity and drift.", default=256)

    def __post_init__(self):
        super().__post_init__()
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"Unknown metrics {unknown}; choose among {list(METRICS)}.")
        if isinstance(self.judge_models, str):
            self.judge_models = [self.judge_models]
        self.stop_sequences = decode_escapes(self.stop_sequences)
