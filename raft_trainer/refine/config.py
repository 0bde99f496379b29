"""`RefineConfig`: every option of Stage 1 (`raft refine` flags and YAML keys), documented once."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..backends import BackendArguments, decode_escapes
from ..templates import DEFAULT_PLAIN_PROMPT

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_STOP = ("\nQuestion:", "\nReference answer:", "\n\n\n")


def resolve_output_format(output_format: str, model_spec: str, api: str = "chat", backend=None) -> str:
    """`output_format` with `"auto"` made concrete for the model that will read the prompts.

    `"auto"`: `"conversational"` when the tokenizer of `model_spec` (a local path, a hub name or `vllm:PATH`) has a
    chat template, else `"plain"` (the rule `raft train` applies, `data.qa_prompt_format`); a served model
    (`name@http://...`) is conversational for `api="chat"` and plain for `api="completions"`. An already built
    `backend` for the spec is asked instead: its tokenizer decides, and one without a tokenizer takes chat prompts.
    """
    if output_format != "auto":
        return output_format
    if backend is not None:
        from ..data import qa_prompt_format

        tokenizer = getattr(backend, "tokenizer", None)
        return "conversational" if tokenizer is None else qa_prompt_format(tokenizer)
    _, sep, url = model_spec.rpartition("@")
    if sep and url.startswith(("http://", "https://")):
        return "conversational" if api == "chat" else "plain"
    from transformers import AutoTokenizer

    from ..data import qa_prompt_format

    return qa_prompt_format(AutoTokenizer.from_pretrained(model_spec.removeprefix("vllm:")))


def _help(text: str, **kwargs):
    return field(metadata={"help": text}, **kwargs)  # the `help` is the field's documentation (argparse, docs)


@dataclass
class QADataArguments:
    """How (question, gold answer) rows are read from a dataset: shared by `RefineConfig` and `EvalConfig`."""

    dataset_config: str | None = _help("Dataset configuration name (for named datasets).", default=None)
    dataset_split: str = _help("Split to read.", default="train")
    question_column: str | None = _help(
        "Question column (default: question, else prompt, else messages).", default=None
    )
    answer_column: str | None = _help("Gold answer column (default: answer, else completion).", default=None)
    id_column: str | None = _help("Row id column (default: id if present, else the row number).", default=None)
    output_format: str = _help(
        "Prompt format for question/answer input: 'auto' (conversational when the model's tokenizer has a chat "
        "template, else plain; a served model: by --api), 'conversational' (a user message, for chat models) or "
        "'plain' (plain_prompt_template). prompt/completion and messages input keep their own format.",
        default="auto",
    )
    plain_prompt_template: str = _help("Plain prompt for output_format=plain.", default=DEFAULT_PLAIN_PROMPT)
    max_input_chars: int = _help("Rows whose question + answer exceed this many characters are skipped.", default=8000)

    def __post_init__(self):
        if self.output_format not in {"auto", "conversational", "plain"}:
            raise ValueError(f"output_format must be 'auto', 'conversational' or 'plain', got {self.output_format!r}.")
        if "{question}" not in self.plain_prompt_template:
            raise ValueError("plain_prompt_template must contain '{question}'.")


@dataclass
class RefineConfig(BackendArguments, QADataArguments):
    """Stage 1 of RAFT: rewrite ỹ ~ p_θ(·|x, y), keep ỹ if cos(φ(y), φ(ỹ)) ≥ τ, fuse y and ỹ into ŷ with judges.

    Each field's `help` is its documentation (`raft refine --help`, `docs/refinement.md`). Models are backend specs
    (`raft_trainer.backends.load_backend`): a local path or name, `name@http://host:port/v1`, or `vllm:name`.
    """

    # > Input and output
    dataset_name: str | None = _help(
        "Data file (JSONL/JSON/CSV/Parquet) or dataset name; default: bundled example.", default=None
    )
    output_dir: str = _help(
        "Folder for refined.jsonl, summary.json, skipped.jsonl, run_config.json.", default="runs/refined"
    )
    max_rows: int | None = _help("Refine only the first N rows (quick runs).", default=None)
    batch_size: int = _help("Rows per refinement batch (one append to refined.jsonl per batch).", default=8)
    seed: int = _help("Base seed; each batch and fusion round derives its own.", default=42)
    overwrite: bool = _help("Start over instead of resuming from an existing refined.jsonl.", default=False)

    # > Self-conditioned rewriting (the backbone that will be fine-tuned)
    rewrite_model: str | None = _help("Backbone backend spec; default: the embedded Gemma 3 270M.", default=None)
    rewrite_prompt_file: str | None = _help(
        "Rewrite prompt template file (default: bundled rewrite.txt).", default=None
    )
    rewrite_max_new_tokens: int = _help("Token cap of a rewrite.", default=128)
    rewrite_temperature: float = _help("Rewrite sampling temperature (0 = greedy).", default=0.0)
    rewrite_top_p: float = _help("Rewrite nucleus mass.", default=1.0)

    # > Semantic filter
    embedding_model: str = _help("sentence-transformers model name or path (φ).", default=DEFAULT_EMBEDDING_MODEL)
    similarity_threshold: float = _help(
        "τ: keep the rewrite if cos(φ(y), φ(ỹ)) ≥ τ, else fall back to y.", default=0.8
    )
    embedding_device: str | None = _help("Device for the embedding model (default: auto).", default=None)

    # > Answer fusion with multi-judge selection
    fusion: bool = _help("Fuse y and the accepted ỹ into ŷ. Off: ŷ = ỹ (a deviation from the paper).", default=True)
    fusion_model: str | None = _help("Fusion backend spec (usually stronger); default: rewrite_model.", default=None)
    fusion_prompt_file: str | None = _help("Fusion prompt template file (default: bundled fusion.txt).", default=None)
    fusion_rounds: int = _help("Maximum fusion rounds per row.", default=3)
    fusion_max_new_tokens: int = _help("Token cap of a fused answer.", default=128)
    fusion_temperature: float = _help("Fusion sampling temperature (rounds differ only if > 0).", default=0.7)
    fusion_top_p: float = _help(
        "Fusion nucleus mass (1 = off; sorting a large vocabulary each step is slow on CPU).", default=1.0
    )
    judge_models: list[str] | None = _help("Judge backend specs (one or more); default: [fusion_model].", default=None)
    judge_prompt_file: str | None = _help("Judge prompt template file (default: bundled judge.txt).", default=None)
    judge_max_new_tokens: int = _help("Token cap of a judge reply.", default=16)
    judge_stop_score: float = _help("Stop fusing once a candidate's mean judge score reaches this.", default=0.8)
    judge_retries: int = _help(
        "Ask a judge again (sampling at temperature 0.7) when its reply states no readable score, up to this many "
        "times; replies still unreadable are recorded and left out of the mean.",
        default=1,
    )
    stop_sequences: list[str] = _help(
        "Generated text is cut before the first of these (base models keep writing otherwise); judges also stop at a "
        "newline. Empty: rely on EOS (chat models).",
        default_factory=lambda: list(DEFAULT_STOP),
    )

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.similarity_threshold <= 1.0:
            raise ValueError(f"similarity_threshold (τ) must be in [0, 1], got {self.similarity_threshold}.")
        if self.fusion_rounds < 1 or self.batch_size < 1:
            raise ValueError("fusion_rounds and batch_size must be at least 1.")
        if self.judge_retries < 0:
            raise ValueError(f"judge_retries must be 0 or more, got {self.judge_retries}.")
        if isinstance(self.judge_models, str):
            self.judge_models = [self.judge_models]
        self.stop_sequences = decode_escapes(self.stop_sequences)

    def outcome_fields(self) -> dict:
        """The settings that change the refined rows; a resumed run must match them."""
        ignored = {
            "overwrite",
            "max_rows",
            "output_dir",
            "max_concurrency",
            "request_timeout",
            "max_retries",
            "api_key_env",
            "device",
            "generation_batch_size",
            "embedding_device",
        }
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ignored}
