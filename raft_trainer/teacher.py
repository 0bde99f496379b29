"""Resolve the frozen teacher once: the adapter-disabled base under PEFT, else the original model loaded again from
its name or path (never a deep copy, which would copy empty ZeRO-3 shards), or a model the user passes.
"""

from __future__ import annotations

import contextlib

import torch
from accelerate.logging import get_logger
from transformers import AutoModelForCausalLM, PreTrainedModel
from trl.trainer.utils import get_config_model_id, use_adapter

from .errors import ConfigError
from .heads import add_hidden_states_output, lm_head_of
from .losses import TeacherTopK, teacher_topk

logger = get_logger(__name__)

_FIRST_ADDED_TOKEN = "_raft_first_added_token"  # attribute of a teacher whose embeddings grew with the student's


def teacher_init_kwargs(args, *, same_checkpoint: bool, dtype: torch.dtype | None = None) -> dict:
    """`from_pretrained` keyword arguments for a teacher loaded from a name or path: the student's loading options
    (`args.model_init_kwargs`, with `trust_remote_code` from `args.trust_remote_code` where they do not set it, as
    `SFTTrainer` loads the student), then `args.teacher_model_init_kwargs`, which win key by key.

    `revision` names a commit of the student's repository, so it is kept only for the same checkpoint
    (`same_checkpoint`); `dtype`, when given (the reloaded original: the student's dtype as loaded), replaces the
    student's `dtype` option (which may be `"auto"`); `device_map` is `None` in multi-process runs, as for the
    student."""
    kwargs = dict(args.model_init_kwargs or {})
    kwargs.setdefault("trust_remote_code", getattr(args, "trust_remote_code", False))
    if not same_checkpoint:
        kwargs.pop("revision", None)
    if dtype is not None:
        kwargs["dtype"] = dtype
    state = getattr(args, "distributed_state", None)
    if state is not None and state.distributed_type in ("MULTI_GPU", "DEEPSPEED"):  # as TRL loads the student
        kwargs["device_map"] = None
    return {**kwargs, **(args.teacher_model_init_kwargs or {})}


def _from_pretrained(name_or_path: str, init_kwargs: dict) -> PreTrainedModel:
    kwargs = dict(init_kwargs)
    dtype = kwargs.get("dtype")
    if isinstance(dtype, str) and dtype in ("bfloat16", "float16", "float32"):  # as TRL reads the student's `dtype`
        kwargs["dtype"] = getattr(torch, dtype)
    return AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)


def load_teacher(model_or_path: str | PreTrainedModel, init_kwargs: dict | None = None) -> PreTrainedModel:
    """Load (if given a path) and freeze the teacher: eval mode, no gradients, hidden-states output added. A failed
    load is a `ConfigError` that shows the options used and names `teacher_model_init_kwargs`."""
    if isinstance(model_or_path, str):
        try:
            teacher = _from_pretrained(model_or_path, init_kwargs or {})
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"The teacher {model_or_path!r} could not be loaded with {_shown(init_kwargs)} (the student's "
                f"`model_init_kwargs`, overridden key by key by `teacher_model_init_kwargs`): {error} Set the "
                "teacher's loading options in `teacher_model_init_kwargs`."
            ) from error
    else:
        teacher = model_or_path
    teacher.eval()
    teacher.requires_grad_(False)
    add_hidden_states_output(teacher)
    return teacher


def reload_original(student: PreTrainedModel, init_kwargs: dict | None = None) -> PreTrainedModel:
    """Load the student's original weights again from `config._name_or_path` with `init_kwargs`
    (`teacher_init_kwargs`; the student's dtype unless they set one), with a clear error if that fails, the
    embeddings grown as the student's were (`match_added_tokens`), and a warning when the model passed in memory is
    not that checkpoint (`weights_differ`)."""
    name_or_path = get_config_model_id(student.config)
    kwargs = {"dtype": student.dtype, **(init_kwargs or {})}
    try:
        teacher = _from_pretrained(name_or_path, kwargs)
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"RAFT's default teacher is the original model, loaded again from {name_or_path!r} with "
            f"{_shown(kwargs)} (the student's `model_init_kwargs`, overridden key by key by "
            f"`teacher_model_init_kwargs`), which failed: {error} Set the teacher's loading options in "
            "`teacher_model_init_kwargs`, pass `teacher_model=` (a name, path or model) to RAFTTrainer, or train "
            "with LoRA so the adapter-disabled base serves as the teacher."
        ) from error
    match_added_tokens(student, teacher)
    teacher = load_teacher(teacher)  # frozen after the resize, whose new modules would train
    difference = weights_differ(student, teacher)
    if difference:
        logger.warning(
            f"The model passed to RAFTTrainer differs from the checkpoint it was loaded from ({name_or_path!r}; "
            f"{difference}), but RAFT's teacher was loaded again from that checkpoint, so the teacher is not the "
            "model you passed. To distil from the model as passed, give `teacher_model=` a frozen copy of it "
            "(or save it and pass its folder)."
        )
    return teacher


def _shown(kwargs: dict | None) -> str:
    shown = {k: v for k, v in (kwargs or {}).items() if v is not None}
    return f"{shown}" if shown else "no options"


@torch.no_grad()
def match_added_tokens(student: PreTrainedModel, teacher: PreTrainedModel) -> None:
    """Give the reloaded teacher the embedding rows the student gained after loading.

    `chat_template_path` (TRL's `clone_chat_template`) adds the source tokenizer's tokens to the student's tokenizer
    and resizes its embeddings (to a multiple of 64; e.g. 400 -> 448), while the original model loaded again keeps
    the old size. The teacher is resized the same way (`resize_token_embeddings`, mean-initialised rows), the
    student's new rows are copied into it where they are materialised (so that teacher and student agree as
    training starts, also on the chat template's new tokens in the teacher's input), and the new rows are masked
    out of the teacher's output: the original model never had these tokens, so they get logit -inf and never enter
    its top-K (`teacher_topk_over_completions`); the KL then leaves them out (q̃ = 0)."""
    old = teacher.get_input_embeddings().num_embeddings  # the module's size, also when ZeRO-3 shards the weight
    new = student.get_input_embeddings().num_embeddings
    if new <= old or student.config.get_text_config().vocab_size != new:
        return
    device = teacher.get_input_embeddings().weight.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # the seed's stream is untouched
        teacher.resize_token_embeddings(new, mean_resizing=True)
    pairs = [(student.get_input_embeddings(), teacher.get_input_embeddings())]
    head = teacher.get_output_embeddings()
    if head is not None and head.weight is not teacher.get_input_embeddings().weight:
        pairs.append((student.get_output_embeddings(), head))
    for source, target in pairs:
        materialised = source is not None and source.weight.numel() > 0 and source.weight.device.type != "meta"
        if not materialised or source.weight.shape != target.weight.shape:
            continue  # not materialised here (ZeRO-3 shards): the mean-initialised rows stay (they are masked out)
        target.weight[old:] = source.weight[old:].to(target.weight.device, target.weight.dtype)
    setattr(teacher, _FIRST_ADDED_TOKEN, old)


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
        module = getattr(network, "module", network)
        head = lm_head_of(module)
        first_added = getattr(module, _FIRST_ADDED_TOKEN, None)
        top = teacher_topk(
            hidden,
            head if first_added is None else _without_added_tokens(head, first_added),
            k=k,
            temperature=temperature,
            chunk_size=chunk_size,
            num_chunks=num_chunks,
        )
    shape = (num_rows, completion_length, -1)
    return TeacherTopK(top.indices.view(shape), top.logprobs.view(shape), top.mass.view(num_rows, completion_length))


def _without_added_tokens(head, first_added: int):
    """The teacher's output projection with the logits of the tokens from `first_added` on set to -inf
    (`match_added_tokens`)."""

    def project(rows: torch.Tensor) -> torch.Tensor:
        logits = head(rows)
        logits[..., first_added:] = float("-inf")
        return logits

    return project


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
