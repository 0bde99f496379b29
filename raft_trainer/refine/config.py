"""`RefineConfig`: every option of Stage 1 (`raft refine` flags and YAML keys), documented once."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..backends import BackendArguments, decode_escapes
from ..errors import ConfigError
from ..options import option
from ..qa_rows import QADataArguments

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_STOP = ("\nQuestion:", "\nReference answer:", "\n\n\n")


@dataclass
class RefineConfig(BackendArguments, QADataArguments):
    """Stage 1 of RAFT: rewrite ỹ ~ p_θ(·|x, y), keep ỹ if cos(φ(y), φ(ỹ)) ≥ τ, fuse y and ỹ into ŷ with judges.

    Each field's `help` is its documentation (`raft refine --help`, `docs/refinement.md`). Models are backend specs
    (`raft_trainer.backends.load_backend`): a local path or name, `name@http://host:port/v1`, or `vllm:name`.
    """

    # > Input and output
    dataset_name: str | None = option(
        "Data file (JSONL/JSON/CSV/Parquet) or dataset name; default: bundled example.", default=None
    )
    output_dir: str = option(
        "Folder for refined.jsonl, summary.json, skipped.jsonl, run_config.json.", default="runs/refined"
    )
    max_rows: int | None = option("Refine only the first N rows (quick runs).", default=None)
    batch_size: int = option("Rows per refinement batch (one append to refined.jsonl per batch).", default=8)
    seed: int = option("Base seed; each batch and fusion round derives its own.", default=42)
    overwrite: bool = option("Start over instead of resuming from an existing refined.jsonl.", default=False)

    # > Self-conditioned rewriting (the backbone that will be fine-tuned)
    rewrite_model: str | None = option("Backbone backend spec; default: the embedded Gemma 3 270M.", default=None)
    rewrite_prompt_file: str | None = option(
        "Rewrite prompt template file (default: bundled rewrite.txt).", default=None
    )
    rewrite_max_new_tokens: int = option("Token cap of a rewrite.", default=128)
    rewrite_temperature: float = option("Rewrite sampling temperature (0 = greedy).", default=0.0)
    rewrite_top_p: float = option("Rewrite nucleus mass.", default=1.0)

    # > Semantic filter
    embedding_model: str = option("sentence-transformers model name or path (φ).", default=DEFAULT_EMBEDDING_MODEL)
    similarity_threshold: float = option(
        "τ: keep the rewrite if cos(φ(y), φ(ỹ)) ≥ τ, else fall back to y.", default=0.8
    )
    embedding_device: str | None = option("Device for the embedding model (default: auto).", default=None)

    # > Answer fusion with multi-judge selection
    fusion: bool = option("Fuse y and the accepted ỹ into ŷ. Off: ŷ = ỹ (a deviation from the paper).", default=True)
    fusion_model: str | None = option("Fusion backend spec (usually stronger); default: rewrite_model.", default=None)
    fusion_prompt_file: str | None = option("Fusion prompt template file (default: bundled fusion.txt).", default=None)
    fusion_rounds: int = option("Maximum fusion rounds per row.", default=3)
    fusion_max_new_tokens: int = option("Token cap of a fused answer.", default=128)
    fusion_temperature: float = option("Fusion sampling temperature (rounds differ only if > 0).", default=0.7)
    fusion_top_p: float = option(
        "Fusion nucleus mass (1 = off; sorting a large vocabulary each step is slow on CPU).", default=1.0
    )
    judge_models: list[str] | None = option(
        "Judge backend specs (one or more); default: [fusion_model].", default=None
    )
    judge_prompt_file: str | None = option("Judge prompt template file (default: bundled judge.txt).", default=None)
    judge_max_new_tokens: int = option("Token cap of a judge reply.", default=16)
    judge_stop_score: float = option("Stop fusing once a candidate's mean judge score reaches this.", default=0.8)
    judge_retries: int = option(
        "Ask a judge again (sampling at temperature 0.7) when its reply states no readable score, up to this many "
        "times; replies still unreadable are recorded and left out of the mean.",
        default=1,
    )
    stop_sequences: list[str] = option(
        "Generated text is cut before the first of these (base models keep writing otherwise); judges also stop at a "
        "newline. Empty: rely on EOS (chat models).",
        default_factory=lambda: list(DEFAULT_STOP),
    )

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.similarity_threshold <= 1.0:
            raise ConfigError(f"similarity_threshold (τ) must be in [0, 1], got {self.similarity_threshold}.")
        if self.fusion_rounds < 1 or self.batch_size < 1:
            raise ConfigError("fusion_rounds and batch_size must be at least 1.")
        if self.judge_retries < 0:
            raise ConfigError(f"judge_retries must be 0 or more, got {self.judge_retries}.")
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
