"""`EvalConfig`: every option of `raft eval` (flags and YAML keys), documented once in each field's help."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from ..backends import BackendArguments, decode_escapes
from ..errors import ConfigError, MissingPackageError
from ..options import option
from ..qa_rows import QADataArguments
from . import metrics as registry
from .trackers import check_trackers


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
    metrics: list[str] = option(
        "Metrics to run: " + "; ".join(f"{m.name} ({m.description})" for m in registry.METRICS.values()) + ".",
        default_factory=lambda: [name for name in registry.METRICS if name not in ("lm_eval", "general_judged")],
    )
    limit: int | None = option("Use only the first N items of every evaluation set (quick runs).", default=None)
    output_dir: str = option(
        "Folder for eval_results.json, eval_results.md and eval_tradeoff.png.", default="runs/eval"
    )
    plot: bool = option("Plot domain accuracy against mean general retention (needs matplotlib).", default=True)
    report_to: list[str] = option(
        "Also log the results to these trackers: tensorboard, wandb, trackio (or none); scalars "
        "<model>/<scores|retention|domain_gain>/<key> and the table.",
        default_factory=list,
    )
    logging_dir: str | None = option("TensorBoard log folder (default: <output_dir>/runs).", default=None)

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
    general_qa_file: str | None = option(
        "Open general questions (JSONL: question, answer) for --metrics general_judged, answered zero-shot and judged "
        "by --judge_models; default: the bundled probes' questions.",
        default=None,
    )
    lm_eval_tasks: list[str] = option(
        "lm-evaluation-harness tasks (e.g. ifeval, mmlu, gsm8k) run on the base model and every checkpoint with "
        "lm_eval.simple_evaluate; their scores join the retention table as lm_eval/<task>/<metric>. Needs "
        "`pip install lm-eval` and the tasks' datasets (network), or local tasks from --lm_eval_include_path.",
        default_factory=list,
    )
    lm_eval_include_path: str | None = option("Folder of your own lm-eval task YAML files.", default=None)
    lm_eval_num_fewshot: int | None = option(
        "Few-shot examples for the lm-eval tasks (default: each task's).", default=None
    )
    lm_eval_batch_size: int = option("lm-eval batch size.", default=8)
    lm_eval_model: str | None = option(
        "lm-eval model type that loads each checkpoint itself from its path, e.g. vllm (needs `pip install vllm` and "
        "a CUDA GPU) or hf; default: lm-eval's HFLM on the weights raft eval already loaded.",
        default=None,
    )
    lm_eval_model_args: str = option(
        "Extra lm-eval model_args for --lm_eval_model, as lm-eval writes them (e.g. "
        "gpu_memory_utilization=0.5,max_model_len=2048); `pretrained=<checkpoint path>` is added.",
        default="",
    )
    ifeval_dataset: str | None = option(
        "IFEval-format prompts: a JSONL file or a dataset name such as google/IFEval (default: the bundled 50).",
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
        if isinstance(self.report_to, str):
            self.report_to = [self.report_to]
        check_trackers(self.report_to)
        tasks = [self.lm_eval_tasks] if isinstance(self.lm_eval_tasks, str) else self.lm_eval_tasks
        self.lm_eval_tasks = [task for item in tasks for task in item.split(",") if task]  # ifeval,mmlu or ifeval mmlu
        if self.lm_eval_tasks and "lm_eval" not in self.metrics:
            self.metrics = [*self.metrics, "lm_eval"]  # asking for tasks is asking for the metric
        if self.lm_eval_tasks and self.lm_eval_model == "vllm" and importlib.util.find_spec("vllm") is None:
            raise MissingPackageError("--lm_eval_model vllm needs the package 'vllm': pip install vllm (a CUDA GPU)")
        unknown = sorted(set(self.metrics) - set(registry.METRICS))
        if unknown:
            raise ConfigError(f"Unknown metrics {unknown}; choose among {list(registry.METRICS)}.")
        if isinstance(self.judge_models, str):
            self.judge_models = [self.judge_models]
        self.stop_sequences = decode_escapes(self.stop_sequences)
