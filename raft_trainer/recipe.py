"""Per-domain YAML recipes: data columns, Stage 1 settings, training hyperparameters and LoRA/full variants in one
file, run by `examples/train_raft.py` (single process, or under `accelerate launch` with DDP or DeepSpeed).

A recipe has four sections (see `examples/recipes/*.yaml`):

```yaml
data:      {dataset_name: my_law_qa.jsonl, question_column: question, answer_column: answer, output_format: auto}
refine:    {enabled: true, similarity_threshold: 0.8, ...}    # RefineConfig fields (Stage 1)
train:     {num_train_epochs: 3, global_batch_size: 16, ...}   # RAFTConfig / ModelConfig / ScriptArguments fields
variants:  {full: {...}, lora: {use_peft: true, ...}}          # merged over `train`; pick one with --variant
```
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECTIONS = ("data", "refine", "train", "variants", "default_variant")


@dataclass
class Recipe:
    """A parsed recipe; `path` is where it was read from (relative data paths also resolve against its folder)."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    refine: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_variant: str | None = None

    def train_settings(self, variant: str | None) -> dict[str, Any]:
        """`train` with the chosen variant's keys merged over it."""
        variant = variant or self.default_variant
        if variant is None:
            return dict(self.train)
        if variant not in self.variants:
            raise ValueError(f"{self.path}: no variant {variant!r}; the recipe has {sorted(self.variants)}.")
        return {**self.train, **self.variants[variant]}

    def resolve_path(self, path: str) -> str:
        """A relative data path as given if it exists from the working directory, else next to the repo/recipe."""
        if os.path.isabs(path) or os.path.exists(path):
            return path
        for base in (self.path.parent, *self.path.parents):
            if (base / path).exists():
                return str(base / path)
        return path  # a dataset name, or a missing file that `load_data` reports


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and check a recipe: unknown sections and unknown keys are errors that name them."""
    import yaml

    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or (unknown := set(raw) - set(SECTIONS)):
        raise ValueError(f"{path}: a recipe has the sections {list(SECTIONS)}; unknown: {sorted(unknown)}.")
    recipe = Recipe(path, **{key: raw[key] for key in SECTIONS if raw.get(key) is not None})
    data_fields, refine_fields, train_fields = _field_names()
    _check_keys(path, "data", recipe.data, data_fields)
    _check_keys(path, "refine", recipe.refine, refine_fields - data_fields | {"enabled"})
    for name, settings in {"train": recipe.train, **{f"variants.{v}": s for v, s in recipe.variants.items()}}.items():
        _check_keys(path, name, settings or {}, train_fields | {"global_batch_size"})
    if recipe.default_variant is not None and recipe.default_variant not in recipe.variants:
        raise ValueError(
            f"{path}: default_variant {recipe.default_variant!r} is not one of {sorted(recipe.variants)}."
        )
    return recipe


def _field_names() -> tuple[set[str], set[str], set[str]]:
    from trl import ModelConfig, ScriptArguments

    from .config import RAFTConfig
    from .refine.config import QADataArguments, RefineConfig

    def names(*classes):
        return {f.name for cls in classes for f in dataclasses.fields(cls) if f.init}

    return (
        names(QADataArguments) | {"dataset_name"},
        names(RefineConfig),
        names(RAFTConfig, ModelConfig, ScriptArguments),
    )


def _check_keys(path: Path, section: str, settings: dict, allowed: set[str]) -> None:
    if unknown := sorted(set(settings) - allowed):
        raise ValueError(f"{path}: unknown key(s) in `{section}`: {unknown}. Check the spelling against the docs.")


def gradient_accumulation_for(global_batch_size: int, per_device_batch_size: int, world_size: int) -> int:
    """Accumulation steps that make `per_device · processes · steps` equal the recipe's global batch size."""
    per_step = per_device_batch_size * world_size
    if global_batch_size % per_step:
        raise ValueError(
            f"global_batch_size {global_batch_size} is not a multiple of per_device_train_batch_size "
            f"{per_device_batch_size} × {world_size} processes; change one of them."
        )
    return global_batch_size // per_step


def resolve_output_format(requested: str | None, tokenizer) -> str:
    """`auto` (the recipes' default): conversational prompts when the model's tokenizer has a chat template."""
    if requested in (None, "auto"):
        return "conversational" if getattr(tokenizer, "chat_template", None) else "plain"
    return requested


def training_rows_file(recipe: Recipe, model_path: str, output_dir: str, *, run_refine: bool, tokenizer) -> str:
    """Make the training file from the recipe's data: Stage 1's `refined.jsonl`, or (refinement off) the pairs as
    prompt/completion rows. Both resume or reuse what an earlier run wrote. Returns the JSONL path."""
    from .data import load_data
    from .refine.config import RefineConfig
    from .refine.inputs import read_rows
    from .refine.store import jsonl_text, write_text_atomic

    data = dict(recipe.data)
    data["dataset_name"] = recipe.resolve_path(data["dataset_name"]) if data.get("dataset_name") else None
    data["output_format"] = resolve_output_format(data.get("output_format"), tokenizer)
    settings = {key: value for key, value in recipe.refine.items() if key != "enabled"}
    if run_refine:
        from .refine.pipeline import refine
        from .refine.summary import format_summary

        config = RefineConfig(**{"rewrite_model": model_path, **settings, **data,
                                 "output_dir": os.path.join(output_dir, "refined")})  # fmt: skip
        summary = refine(config)
        print(format_summary(summary))
        return os.path.join(config.output_dir, "refined.jsonl")
    config = RefineConfig(**data, output_dir=output_dir)
    dataset = load_data(config.dataset_name, config.dataset_config, config.dataset_split)
    rows, skipped = read_rows(dataset, config)
    if not rows:
        raise ValueError(f"No usable rows in {config.dataset_name}: {json.dumps(skipped[:3])}")
    path = os.path.join(output_dir, "train_rows.jsonl")
    os.makedirs(output_dir, exist_ok=True)
    write_text_atomic(Path(path), jsonl_text([row.training_record(row.answer, {"refined": False}) for row in rows]))
    return path
