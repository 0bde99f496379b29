"""Resolve the frozen teacher once: the adapter-disabled base under PEFT, else the original model loaded again from
its name or path (never a deep copy, which would copy empty ZeRO-3 shards), or a model the user passes.
"""

from __future__ import annotations

import contextlib

import torch
from accelerate.logging import get_logger
from transformers import AutoModelForCausalLM, PreTrainedModel
from trl.trainer.utils import get_config_model_id, use_adapter

from .heads import add_hidden_states_output, lm_head_of
from .losses import TeacherTopK, teacher_topk

logger = get_logger(__name__)


def load_teacher(model_or_path: str | PreTrainedModel, init_kwargs: dict | None = None) -> PreTrainedModel:
    """Load (if given a path) and freeze the teacher: eval mode, no gradients, hidden-states output added."""
    if isinstance(model_or_path, str):
        teacher = AutoModelForCausalLM.from_pretrained(model_or_path, **(init_kwargs or {}))
    else:
        teacher = model_or_path
    teacher.eval()
    teacher.requires_grad_(False)
    add_hidden_states_output(teacher)
    return teacher


def reload_original(student: PreTrainedModel, init_kwargs: dict | None = None) -> PreTrainedModel:
    """Load the student's original weights again from `config._name_or_path`, with a clear error if that fails and a
    warning when the model passed in memory is not that checkpoint (`weights_differ`)."""
    name_or_path = get_config_model_id(student.config)
    kwargs = {"dtype": student.dtype, **(init_kwargs or {})}
    try:
        teacher = load_teacher(name_or_path, kwargs)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"RAFT's default teacher is the original model, loaded again from {name_or_path!r}, which failed: "
            f"{error}. Pass `teacher_model=` (a name, path or model) to RAFTTrainer, or train with LoRA so the "
            "adapter-disabled base serves as the teacher."
        ) from error
    difference = weights_differ(student, teacher)
    if difference:
        logger.warning(
            f"The model passed to RAFTTrainer differs from the checkpoint it was loaded from ({name_or_path!r}; "
            f"{difference}), but RAFT's teacher was loaded again from that checkpoint, so the teacher is not the "
            "model you passed. To distil from the model as passed, give `teacher_model=` a frozen copy of it "
            "(or save it and pass its folder)."
        )
    return teacher


def weights_differ(model: PreTrainedModel, reference: PreTrainedModel, num_tensors: int = 4) -> str | None:
    """A cheap check that two models hold the same weights: compares `num_tensors` parameters spread over the
    state dict (first, last and between). Returns `None` when they match, else which tensor differs and by how much.
    Tensors that are not materialised here (ZeRO-3 shards, meta tensors) are not compared."""
    ours, theirs = dict(model.named_parameters()), dict(reference.named_parameters())
    names = [n for n in ours if n in theirs and ours[n].shape == theirs[n].shape and ours[n].numel() > 0]
    names = [n for n in names if ours[n].device.type != "meta" and theirs[n].device.type != "meta"]
    if not names:
        return None
    picked = {names[round(i * (len(names) - 1) / max(num_tensors - 1, 1))] for i in range(num_tensors)}
    for name in sorted(picked, key=names.index):
        a, b = ours[name].detach().float().cpu(), theirs[name].detach().float().cpu()
        if not torch.equal(a, b):
            return f"{name}: largest difference {float((a - b).abs().max()):.3g}"
    return None


@torch.no_grad()
def teacher_topk_over_completions(
    model,
    teacher: PreTrainedModel | None,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    completion_length: int,
    *,
    k: int,
    temperature: float,
    chunk_size: int,
    num_chunks: int | None = None,
) -> TeacherTopK:
    """The frozen teacher's top-K over each completion position of `[teacher prompt ⊕ z]` (paper Eq. 3).

    The teacher is `teacher`, or with `None` the student `model` (unwrapped, a PEFT model) with its adapter disabled
    and dropout off. One forward gives its last hidden states; the `C = completion_length` positions that predict z
    go through its LM head in chunks (`losses.teacher_topk`).

    Args:
        input_ids, attention_mask, position_ids (`torch.Tensor`): `(N, P + C)` teacher prompt ⊕ z, left-padded.
        k, temperature, chunk_size, num_chunks: as in `losses.teacher_topk`.

    Returns:
        `TeacherTopK` with ids and log q̃ `(N, C, K)` and top-K mass `(N, C)`.
    """
    num_rows = input_ids.size(0)
    with _teacher_network(model, teacher) as network:
        hidden = network(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            return_last_hidden_state=True,
        )
        hidden = hidden[:, -completion_length - 1 : -1].reshape(num_rows * completion_length, -1)
        top = teacher_topk(
            hidden,
            lm_head_of(getattr(network, "module", network)),
            k=k,
            temperature=temperature,
            chunk_size=chunk_size,
            num_chunks=num_chunks,
        )
    shape = (num_rows, completion_length, -1)
    return TeacherTopK(top.indices.view(shape), top.logprobs.view(shape), top.mass.view(num_rows, completion_length))


@contextlib.contextmanager
def _teacher_network(model, teacher: PreTrainedModel | None):
    """`teacher`, or `model` with its adapter disabled and in eval mode for the duration (the LoRA teacher)."""
    if teacher is not None:
        yield teacher
        return
    was_training = model.training
    model.eval()  # no dropout in the teacher pass
    try:
        with use_adapter(model, None):
            yield model
    finally:
        model.train(was_training)
