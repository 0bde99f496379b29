"""The lab's methods: what each one trains on and with which trainer and settings (one table, one train function).

| method | data | trainer |
|---|---|---|
| `base` | — | none: the original model |
| `sft` | gold answers | `RAFTTrainer(use_distillation=False)`: exactly TRL's `SFTTrainer` |
| `sft_refined` | Stage 1 output ŷ | the same, on ŷ (the paper's "fused data + SFT" ablation) |
| `on_policy` | gold answers | RAFT with `answer_conditioning=False`: SFT + on-policy distillation from the original model |
| `raft_fixed_0.1`, `raft_fixed_1.0` | ŷ | RAFT with a fixed λ (the paper's ablation) |
| `raft` | ŷ | RAFT: SFT on ŷ + answer-conditioned on-policy top-K distillation, EMA λ |
| `sdft_trl` | gold answers as privileged context | TRL's `SDFTTrainer` (top-K logits, K and T as RAFT's; no SFT term) |
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Method:
    name: str
    data: str  # "gold", "refined" or "none"
    trainer: str  # "raft", "sdft" or "none"
    overrides: dict[str, Any] = field(default_factory=dict)


METHODS = {
    m.name: m
    for m in (
        Method("base", "none", "none"),
        Method("sft", "gold", "raft", {"use_distillation": False}),
        Method("sft_refined", "refined", "raft", {"use_distillation": False}),
        Method("on_policy", "gold", "raft", {"answer_conditioning": False}),
        Method("raft_fixed_0.1", "refined", "raft", {"loss_balancing": "fixed", "fixed_lambda": 0.1}),
        Method("raft_fixed_1.0", "refined", "raft", {"loss_balancing": "fixed", "fixed_lambda": 1.0}),
        Method("raft", "refined", "raft"),
        Method("sdft_trl", "gold", "sdft"),
    )
}


@dataclass
class TrainedModel:
    model: Any
    tokenizer: Any
    log_history: list[dict]
    train_seconds: float


def train(method: Method, model_path: str, rows: list[dict], config, seed: int, run_dir: str) -> TrainedModel:
    """Train `method` from `model_path` on prompt/completion `rows` with the lab's budget; the teacher is freed."""
    from datasets import Dataset

    common = dict(
        output_dir=run_dir,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type="constant",
        weight_decay=0.01,
        logging_steps=1,
        save_strategy="no",
        report_to=[] if config.report_to == "none" else [config.report_to],
        seed=seed,
        data_seed=seed,
        disable_tqdm=True,
        max_completion_length=config.max_completion_length,
    )
    if method.trainer == "sdft":
        trainer = _sdft_trainer(model_path, rows, config, common)
    else:
        from .. import RAFTConfig, RAFTTrainer

        extra = {"teacher_template": config.teacher_template} if config.teacher_template else {}
        args = RAFTConfig(**common, max_length=config.max_length, **extra, **method.overrides)
        dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
        trainer = RAFTTrainer(model_path, args=args, train_dataset=dataset)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trained = TrainedModel(trainer.model.eval(), trainer.processing_class, list(trainer.state.log_history), seconds)
    del trainer
    gc.collect()
    return trained


def _sdft_trainer(model_path: str, rows: list[dict], config, common: dict):
    from datasets import Dataset
    from transformers import AutoConfig
    from trl.experimental.sdft import SDFTConfig, SDFTTrainer

    from ..config import _has_bf16_accelerator
    from ..teacher_prompts import DEFAULT_TEACHER_TEMPLATE

    template = (config.teacher_template or DEFAULT_TEACHER_TEMPLATE).replace("{reference}", "{privileged_context}")
    vocab = AutoConfig.from_pretrained(model_path).get_text_config().vocab_size
    args = SDFTConfig(
        **common,
        num_generations=1,
        temperature=1.5,
        generation_kwargs={"temperature": 1.0},  # loss T = RAFT's
        distillation_mode="topk_logits",
        distillation_topk=min(512, vocab),
        distillation_alpha=0.0,
        distillation_add_tail=False,
        teacher_model_kind="base",
        teacher_prompt_template=template,
        max_prompt_length=config.max_length,
        use_vllm=False,
        bf16=_has_bf16_accelerator(),
    )
    dataset = Dataset.from_list([{"prompt": r["prompt"], "privileged_context": r["completion"].strip()} for r in rows])
    return SDFTTrainer(model_path, args=args, train_dataset=dataset)
