"""RAFTConfig: TRL's SFTConfig plus the distillation, balancing, teacher and rollout settings of RAFT."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainingArguments
from trl import SFTConfig
from trl.trainer.utils import get_config_model_id

from .errors import ConfigError
from .stopping import decode_escapes
from .teacher_prompts import DEFAULT_TEACHER_TEMPLATE, validate_teacher_template


def _has_bf16_accelerator() -> bool:
    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


@dataclass
class RAFTConfig(SFTConfig):
    r"""
    Configuration for [`RAFTTrainer`]. Every [`~trl.SFTConfig`] field works as in SFT; the fields below are RAFT's,
    with the paper's values (arXiv 2606.00147) as defaults.

    Unlike `SFTConfig`, an unset `bf16` falls back to fp32 on a machine without a GPU instead of raising.

    > Parameters that control the distillation

    use_distillation (`bool`, *optional*, defaults to `True`):
        Add the on-policy top-K distillation term. `False` gives exactly SFT (same losses as `SFTTrainer`).
    answer_conditioning (`bool`, *optional*, defaults to `True`):
        Show the teacher the reference answer through `teacher_template`. `False` gives plain on-policy
        distillation from the original model (the paper's baseline): the teacher sees the student's prompt.
    distillation_topk (`int`, *optional*, defaults to `512`):
        K: the teacher's top-K tokens over which both distributions are renormalised.
    distillation_temperature (`float`, *optional*, defaults to `1.5`):
        T: softmax temperature of the distillation; the KL is multiplied by T².
    distillation_chunk_size (`int`, *optional*, defaults to `256`):
        Positions projected through the LM head at once; bounds the extra memory to `chunk · vocab · 4` bytes.

    > Parameters that control the loss balancing (L = L_SFT + λ·L_KL)

    loss_balancing (`str`, *optional*, defaults to `"ema"`):
        `"ema"`: λ = m̂_SFT / (m̂_KL + ε) from bias-corrected EMAs of both losses; `"fixed"`: λ = `fixed_lambda`.
    ema_beta (`float`, *optional*, defaults to `0.9`):
        β, the EMA decay.
    ema_eps (`float`, *optional*, defaults to `1e-8`):
        ε in λ's denominator (not given by the paper).
    fixed_lambda (`float`, *optional*, defaults to `1.0`):
        λ when `loss_balancing="fixed"`.

    > Parameters that control the teacher

    teacher_template (`str`, *optional*, defaults to the paper's template):
        Teacher prompt with the placeholders `{reference}` and `{prompt}`; the student's completion ids follow it.
        For conversational data it replaces the last user turn and goes through the chat template.
    max_teacher_prompt_length (`int`, *optional*):
        Token budget of the teacher prompt; the reference is cut to fit, never the question. Defaults to `max_length`.
    teacher_model_init_kwargs (`dict`, *optional*):
        Keyword arguments for `from_pretrained` when the teacher is loaded from a name or path. The teacher gets the
        student's `model_init_kwargs` (and `trust_remote_code`), and these win key by key.

    > Parameters that control the rollouts (kept apart from the distillation temperature)

    max_completion_length (`int`, *optional*, defaults to `256`):
        Maximum number of tokens sampled per rollout.
    temperature (`float`, *optional*, defaults to `1.0`):
        Sampling temperature of the rollouts.
    top_p (`float`, *optional*, defaults to `1.0`):
        Nucleus sampling of the rollouts.
    top_k (`int`, *optional*, defaults to `0`):
        Top-k sampling of the rollouts; `0` disables it. The rollouts use only `temperature`, `top_p` and `top_k`
        (`repetition_penalty` is pinned to 1); other settings of the model's `generation_config` still apply.
    num_generations (`int`, *optional*, defaults to `1`):
        Rollouts per prompt.
    stop_strings (`list[str]`, *optional*):
        A rollout ends at the token that completes the first of these strings, as it ends at EOS: that token is kept
        and distilled, nothing after it. Default: `["\\n"]` when the tokenizer has no chat template (a base model
        never emits EOS after an answer, so its rollouts would otherwise run to `max_completion_length`), none
        otherwise (EOS and the chat template's end-of-turn token end rollouts). `[]` turns the default off. Typed
        `\\n` and `\\t` on the command line become a newline and a tab. `completions/clipped_ratio` shows the effect.
    ds3_gather_for_generation (`bool`, *optional*, defaults to `True`):
        Gather ZeRO-3 weights for generation (faster; set `False` when the model does not fit on one device).

    > Parameters that control vLLM rollouts (optional extra `raft_trainer[vllm]`, GPUs only; same names as GRPOConfig)

    use_vllm (`bool`, *optional*, defaults to `False`):
        Sample rollouts with vLLM (TRL's `VLLMGeneration`); weights are pushed to it once per optimizer step.
    vllm_mode (`str`, *optional*, defaults to `"colocate"`):
        `"colocate"`: an engine inside each training process; `"server"`: a `trl vllm-serve` server on other GPUs.
    vllm_server_base_url (`str`, *optional*):
        Server URL (overrides host and port).
    vllm_server_host (`str`, *optional*, defaults to `"0.0.0.0"`):
        Server host (when no URL is given).
    vllm_server_port (`int`, *optional*, defaults to `8000`):
        Server port (when no URL is given).
    vllm_server_timeout (`float`, *optional*, defaults to `240.0`):
        Seconds to wait for the server.
    vllm_tensor_parallel_size (`int`, *optional*, defaults to `1`):
        Colocate mode: GPUs per engine.
    vllm_gpu_memory_utilization (`float`, *optional*, defaults to `0.3`):
        Colocate mode: share of each GPU's memory vLLM may take (the rest is training's).
    vllm_max_model_length (`int`, *optional*):
        Colocate mode: context length of the engine (prompt + completion).
    vllm_enable_sleep_mode (`bool`, *optional*, defaults to `False`):
        Colocate mode: release vLLM's memory between rollouts (slower, frees memory for the training step).
    """

    _VALID_DICT_FIELDS = SFTConfig._VALID_DICT_FIELDS + ["teacher_model_init_kwargs"]

    use_distillation: bool = field(default=True, metadata={"help": "Add the distillation term (False = SFT)."})
    answer_conditioning: bool = field(default=True, metadata={"help": "Teacher sees the reference answer."})
    distillation_topk: int = field(default=512, metadata={"help": "K of the top-K distillation."})
    distillation_temperature: float = field(default=1.5, metadata={"help": "T of the distillation (KL × T²)."})
    distillation_chunk_size: int = field(default=256, metadata={"help": "Positions per LM-head chunk."})
    loss_balancing: str = field(default="ema", metadata={"help": "'ema' or 'fixed'.", "choices": ["ema", "fixed"]})
    ema_beta: float = field(default=0.9, metadata={"help": "EMA decay β."})
    ema_eps: float = field(default=1e-8, metadata={"help": "ε in λ = m̂_SFT / (m̂_KL + ε)."})
    fixed_lambda: float = field(default=1.0, metadata={"help": "λ when loss_balancing='fixed'."})
    teacher_template: str = field(default=DEFAULT_TEACHER_TEMPLATE, metadata={"help": "Teacher prompt template."})
    max_teacher_prompt_length: int | None = field(default=None, metadata={"help": "Teacher prompt token budget."})
    teacher_model_init_kwargs: dict[str, Any] | str | None = field(
        default=None, metadata={"help": "from_pretrained kwargs for the teacher."}
    )
    max_completion_length: int = field(default=256, metadata={"help": "Max tokens per rollout."})
    temperature: float = field(default=1.0, metadata={"help": "Rollout sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Rollout top-p."})
    top_k: int = field(default=0, metadata={"help": "Rollout top-k (0 = off)."})
    num_generations: int = field(default=1, metadata={"help": "Rollouts per prompt."})
    stop_strings: list[str] | None = field(
        default=None,
        metadata={
            "help": "Rollouts end at the first of these strings, like at EOS (default: a newline when the "
            "tokenizer has no chat template, else none; [] for none)."
        },
    )
    ds3_gather_for_generation: bool = field(default=True, metadata={"help": "Gather ZeRO-3 weights to generate."})
    use_vllm: bool = field(default=False, metadata={"help": "Sample rollouts with vLLM (GPU, extra [vllm])."})
    vllm_mode: str = field(
        default="colocate", metadata={"help": "'colocate' or 'server'.", "choices": ["colocate", "server"]}
    )
    vllm_server_base_url: str | None = field(default=None, metadata={"help": "vLLM server URL."})
    vllm_server_host: str = field(default="0.0.0.0", metadata={"help": "vLLM server host."})
    vllm_server_port: int = field(default=8000, metadata={"help": "vLLM server port."})
    vllm_server_timeout: float = field(default=240.0, metadata={"help": "Seconds to wait for the server."})
    vllm_tensor_parallel_size: int = field(default=1, metadata={"help": "Colocate: GPUs per vLLM engine."})
    vllm_gpu_memory_utilization: float = field(default=0.3, metadata={"help": "Colocate: vLLM's GPU memory share."})
    vllm_max_model_length: int | None = field(default=None, metadata={"help": "Colocate: engine context length."})
    vllm_enable_sleep_mode: bool = field(default=False, metadata={"help": "Colocate: free vLLM memory between uses."})

    def __post_init__(self):
        if self.bf16 is None and not self.fp16 and not _has_bf16_accelerator():
            self.bf16 = False  # SFTConfig would default to bf16 and then refuse to run on a machine without a GPU
        super().__post_init__()
        if self.stop_strings is not None:
            self.stop_strings = decode_escapes(
                [self.stop_strings] if isinstance(self.stop_strings, str) else self.stop_strings
            )
        bad = [
            f"{name}={getattr(self, name)!r} (must be {rule})"
            for name, (ok, rule) in _range_table().items()
            if not ok(getattr(self, name))
        ]
        if bad:
            raise ConfigError(f"Invalid RAFTConfig values: {'; '.join(bad)}.")
        if self.answer_conditioning:
            validate_teacher_template(self.teacher_template)
        if self.use_distillation and (self.packing or self.padding_free):
            raise ConfigError(
                "RAFT distillation needs each example's prompt boundary (the student samples from the prompt, the "
                "teacher scores the completion), which packing and padding-free batches erase. Set `packing=False` "
                "and `padding_free=False`, or `use_distillation=False` for plain SFT."
            )
        if self.use_distillation and self.completion_only_loss is False:
            raise ConfigError("RAFT's SFT term masks the prompt; `completion_only_loss=False` is not supported.")


def _finite(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = True):
    """A check that a number is finite and within [low, high] (ends open as asked)."""

    def check(value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        return (value > low if low_open else value >= low) and (value < high if high_open else value <= high)

    return check


def _optional(check):
    return lambda value: value is None or check(value)


def _range_table() -> dict:
    """Field -> (check, the rule as words): every numeric RAFT field, and the SFT fields a NaN would poison."""
    positive_int = (_finite(1), "an integer ≥ 1")
    return {
        "distillation_topk": positive_int,
        "distillation_temperature": (_finite(0, low_open=True), "finite and > 0"),
        "distillation_chunk_size": positive_int,
        "ema_beta": (_finite(0, 1), "in [0, 1)"),
        "ema_eps": (_finite(0), "finite and ≥ 0"),
        "fixed_lambda": (_finite(0), "finite and ≥ 0"),
        "max_teacher_prompt_length": (_optional(_finite(1)), "None or an integer ≥ 1"),
        "max_completion_length": positive_int,
        "temperature": (_finite(0, low_open=True), "finite and > 0"),
        "top_p": (_finite(0, 1, low_open=True, high_open=False), "in (0, 1]"),
        "top_k": (_finite(0), "an integer ≥ 0"),
        "num_generations": positive_int,
        "loss_balancing": (lambda v: v in ("ema", "fixed"), "'ema' or 'fixed'"),
        "vllm_mode": (lambda v: v in ("colocate", "server"), "'colocate' or 'server'"),
        "vllm_gpu_memory_utilization": (_finite(0, 1, low_open=True, high_open=False), "in (0, 1]"),
        "vllm_server_timeout": (_finite(0, low_open=True), "finite and > 0"),
        "vllm_tensor_parallel_size": positive_int,
        "learning_rate": (_finite(0), "finite and ≥ 0"),
        "weight_decay": (_finite(0), "finite and ≥ 0"),
        "max_grad_norm": (_optional(_finite(0)), "finite and ≥ 0"),
    }


def as_raft_config(args, model) -> RAFTConfig:
    """`args` as a RAFTConfig: a default one when `None`, converted (RAFT fields at their defaults) from an
    `SFTConfig` or `TrainingArguments`, as `SFTTrainer` converts `TrainingArguments`."""
    if isinstance(args, RAFTConfig):
        return args
    if args is None:
        name = model if isinstance(model, str) else get_config_model_id(model.config)
        return RAFTConfig(f"{name.rstrip('/').split('/')[-1]}-RAFT")
    if isinstance(args, TrainingArguments):  # read the fields directly: `to_dict` masks every `*_token` value
        return RAFTConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init})
    raise TypeError(f"`args` must be a RAFTConfig, SFTConfig or TrainingArguments, got {type(args).__name__}.")
