"""`LabConfig`: every option of `raft lab` (flags and YAML keys), with the presets that fill what is left unset."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import ConfigError
from ..options import option

METHOD_ORDER = ("base", "sft", "sft_refined", "on_policy", "raft_fixed_0.1", "raft_fixed_1.0", "raft", "sdft_trl")

# What a preset sets; an option given on the command line (or in a YAML file) wins over its preset.
PRESETS: dict[str, dict] = {
    "default": {"methods": ["base", "sft", "on_policy", "raft"], "seeds": 1},
    "full": {"methods": list(METHOD_ORDER), "seeds": 1},
    "smoke": {
        "methods": list(METHOD_ORDER),
        "seeds": 1,
        "model_name_or_path": "tiny",
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "max_completion_length": 8,
        "test_limit": 8,
        "ifeval_limit": 4,
        "ifeval_max_new_tokens": 16,
        "probe_limit": 12,
        "train_limit": 16,
    },
}
# The training and evaluation budget every method gets unless a preset or an option says otherwise (measured:
# docs/results.md). IFEval: the first 25 bundled prompts, one per instruction type.
BUDGET_DEFAULTS = {
    "max_steps": 16,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "learning_rate": 3e-5,
    "max_completion_length": 32,
    "max_length": 128,
    "ifeval_limit": 25,
    "ifeval_max_new_tokens": 128,
}


@dataclass
class LabConfig:
    """The paper's comparison on one model and one domain: every method on the same data, budget and seeds.

    Each field's `help` is its documentation (`raft lab --help`, `docs/results.md`). Unset fields come from the preset,
    then from the lab's budget defaults.
    """

    preset: str = option(
        "default (base, sft, on_policy, raft; 1 seed), full (every method), smoke (tiny model, CI).", default="default"
    )
    methods: list[str] | None = option(
        f"Methods to run, among {', '.join(METHOD_ORDER)} (default: the preset's).", default=None
    )
    seeds: int | None = option(
        "Number of seeds (0, 1, ...); each trains every method once (default: the preset's).", default=None
    )
    model_name_or_path: str | None = option(
        "The original model: a name or path, or 'tiny' for a small random model built here (default: the embedded "
        "Gemma 3 270M).",
        default=None,
    )
    output_dir: str = option(
        "Folder for lab_results.json/.md, the plots, refined data and per-run logs.", default="runs/lab"
    )

    # > Domain data
    domain: str | None = option("A shipped domain: capitals, elements or books (default: capitals).", default=None)
    domain_dataset: str | None = option(
        "Your training rows (JSONL/CSV/...; question, answer, optional aliases); overrides --domain.", default=None
    )
    domain_test_dataset: str | None = option(
        "Your held-out rows, same columns (needed with --domain_dataset).", default=None
    )
    case_sensitive: bool | None = option(
        "Match accepted answers case-sensitively (default: the domain's setting).", default=None
    )
    train_limit: int | None = option("Use only the first N training rows.", default=None)
    test_limit: int | None = option("Use only the first N held-out rows.", default=None)

    # > Training budget (the same for every method)
    max_steps: int | None = option("Optimizer steps per method (default 16).", default=None)
    per_device_train_batch_size: int | None = option("Rows per step (default 8).", default=None)
    gradient_accumulation_steps: int | None = option("Micro-batches per step (default 1).", default=None)
    learning_rate: float | None = option("AdamW learning rate, constant (default 3e-5).", default=None)
    max_completion_length: int | None = option("Tokens per rollout (default 32).", default=None)
    max_length: int | None = option("Tokens per training row (default 128).", default=None)
    teacher_template: str | None = option("RAFT's teacher template (default: RAFTConfig's).", default=None)
    report_to: str = option("Trackers for each training run (none, tensorboard, wandb, ...).", default="none")

    # > Stage 1 (for sft_refined and the raft methods)
    fusion_model: str | None = option(
        "Fuse gold and rewrite with this backend spec (e.g. name@http://host:port/v1), judged by it; default: no "
        "fusion (ŷ = the accepted rewrite), as in the fast presets.",
        default=None,
    )
    similarity_threshold: float = option("τ of the semantic filter.", default=0.8)

    # > Evaluation (through raft eval)
    probes_file: str | None = option(
        "General probes JSONL (question, answer, aliases, category); default: the lab's 87. Only those the original "
        "model answers correctly are kept, so probe retention is the share of them a method still answers.",
        default=None,
    )
    probe_limit: int | None = option("Use only the first N probes.", default=None)
    ifeval_limit: int | None = option(
        "Use only the first N bundled IFEval prompts (default 25: one per instruction type; the set has 50).",
        default=None,
    )
    ifeval_max_new_tokens: int | None = option("Token cap of an IFEval response (default 128).", default=None)
    plot: bool = option("Write lab_tradeoff.png and lab_curves.png (needs matplotlib).", default=True)
    save_models: bool = option(
        "Keep every trained model in output_dir/models (about 1 GB each for Gemma).", default=False
    )

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ConfigError(f"Unknown preset {self.preset!r}; choose among {sorted(PRESETS)}.")
        for name, value in {**BUDGET_DEFAULTS, **PRESETS[self.preset]}.items():
            if name in PRESETS[self.preset] and getattr(self, name) is None:
                setattr(self, name, value)
        for name, value in BUDGET_DEFAULTS.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if isinstance(self.methods, str):
            self.methods = [m for m in self.methods.replace(",", " ").split() if m]
        unknown = [m for m in self.methods if m not in METHOD_ORDER]
        if unknown or not self.methods:
            raise ConfigError(f"Unknown or no methods {unknown}; choose among {list(METHOD_ORDER)}.")
        self.methods = [m for m in METHOD_ORDER if m in self.methods]  # one order everywhere
        if self.seeds < 1:
            raise ConfigError(f"seeds must be at least 1, got {self.seeds}.")
        if (self.domain_dataset is None) != (self.domain_test_dataset is None):
            raise ConfigError("Give both --domain_dataset (training rows) and --domain_test_dataset (held-out rows).")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
