"""Resolve the frozen teacher once: the adapter-disabled base under PEFT, else the original model loaded again from
its name or path (never a deep copy, which would copy empty ZeRO-3 shards), or a model the user passes.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel
from trl.trainer.utils import get_config_model_id, use_adapter

from .heads import add_raft_head


def load_teacher(model_or_path: str | PreTrainedModel, init_kwargs: dict | None = None) -> PreTrainedModel:
    """Load (if given a path) and freeze the teacher: eval mode, no gradients, RAFT head added."""
    if isinstance(model_or_path, str):
        teacher = AutoModelForCausalLM.from_pretrained(model_or_path, **(init_kwargs or {}))
    else:
        teacher = model_or_path
    teacher.eval()
    teacher.requires_grad_(False)
    add_raft_head(teacher)
    return teacher


def reload_original(student: PreTrainedModel, init_kwargs: dict | None = None) -> PreTrainedModel:
    """Load the student's original weights again from `config._name_or_path`, with a clear error if that fails."""
    name_or_path = get_config_model_id(student.config)
    kwargs = {"dtype": student.dtype, **(init_kwargs or {})}
    try:
        return load_teacher(name_or_path, kwargs)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"RAFT's default teacher is the original model, loaded again from {name_or_path!r}, which failed: "
            f"{error}. Pass `teacher_model=` (a name, path or model) to RAFTTrainer, or train with LoRA so the "
            "adapter-disabled base serves as the teacher."
        ) from error


@torch.no_grad()
def run_teacher(model, teacher: PreTrainedModel | None, head_fn, **inputs):
    """Forward the teacher with `raft_head=head_fn`: `teacher`, or `model` with its adapter disabled when `None`."""
    if teacher is not None:
        return teacher(**inputs, raft_head=head_fn)
    was_training = model.training
    model.eval()  # no dropout in the teacher pass
    try:
        with use_adapter(model, None):
            return model(**inputs, raft_head=head_fn)
    finally:
        model.train(was_training)
