"""RAFTTrainer: TRL's SFTTrainer plus answer-conditioned on-policy top-K distillation from the frozen original model.

One training micro-batch, in order:
1. the current student samples a completion z ~ p_θ(·|x) per prompt (cut at its first EOS);
2. the frozen teacher scores [teacher prompt (reference answer ŷ + question) ⊕ z] and keeps its top-K per position;
3. one student forward over [x ⊕ ŷ] (the SFT rows) and [x ⊕ z] (the rollout rows) gives L_SFT (token NLL of ŷ) and
   L_KL (T²·KL(q̃‖p̃) over the teacher's top-K, averaged per sequence, then over sequences);
4. the loss is L_SFT + λ·L_KL, with λ = m̂_SFT / (m̂_KL + ε) from EMAs updated once per optimizer step.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

import torch
from accelerate.logging import get_logger
from accelerate.utils import is_peft_model
from datasets import Dataset
from transformers import GenerationConfig, TrainingArguments
from trl import SFTTrainer
from trl.data_utils import get_dataset_column_names
from trl.models.utils import prepare_deepspeed, unwrap_model_for_generation
from trl.trainer.utils import pad

from .balancing import RAFTLossBalancer
from .collator import RAFTDataCollator
from .config import RAFTConfig, as_raft_config
from .data import check_chat_template, completion_text, normalize_dataset, qa_prompt_format
from .errors import ConfigError, DataError
from .heads import add_hidden_states_output, lm_head_of
from .losses import (
    TeacherTopK,
    micro_batch_losses,
    num_row_chunks,
    sequence_means,
    student_losses,
    window_losses,
)
from .rollouts import Rollouts, append_completions, positions_from_mask, sample_rollouts
from .stopping import resolve_stop_strings
from .teacher import load_teacher, reload_original, teacher_topk_over_completions
from .teacher_prompts import add_teacher_prompt_ids
from .vllm_rollouts import VLLMRollouts

logger = get_logger(__name__)


RAFT_BATCH_KEYS = (
    "prompt_input_ids",
    "prompt_attention_mask",
    "teacher_prompt_ids",
    "teacher_prompt_attention_mask",
    "completion_ids",
    "completion_mask",
    "completion_finished",
)


class RAFTTrainer(SFTTrainer):
    """Drop-in replacement for `SFTTrainer` (same arguments, plus `teacher_model`) that trains with RAFT's loss.

    Args:
        teacher_model (`str` or `PreTrainedModel`, *optional*):
            The frozen teacher. Defaults to the original model: the adapter-disabled base with PEFT, else the model
            loaded again from its name or path.
        Every other argument is `SFTTrainer`'s. `args` is a [`RAFTConfig`].
    """

    _tag_names = ["trl", "sft", "raft"]
    _name = "RAFT"
    _paper = {
        "title": "RAFT: Data Refinement and Adaptive Distillation for Domain Fine-Tuning with Alleviated Forgetting",
        "id": "2606.00147",
        "citation": (
            "@article{raft2026,\n"
            "    title        = {{RAFT: Data Refinement and Adaptive Distillation for Domain Fine-Tuning with Alleviated "
            "Forgetting}},\n"
            "    year         = 2026,\n"
            "    eprint       = {arXiv:2606.00147}\n"
            "}"
        ),
    }

    def _settings_section(self) -> str:
        """The RAFT fields of `args` (those `SFTConfig` lacks) as a markdown table for the model card."""
        from dataclasses import fields

        from trl import SFTConfig

        sft = {f.name for f in fields(SFTConfig)}
        values = {f.name: repr(getattr(self.args, f.name)).replace("|", "\\|") for f in fields(self.args)}
        rows = [f"| `{name}` | `{value}` |" for name, value in values.items() if name not in sft]
        return "## RAFT settings\n\n| field | value |\n|---|---|\n" + "\n".join(rows) + "\n"

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, tags=None):
        """TRL's model card, citing the RAFT paper; a base model loaded from a local folder is named by that folder
        instead of TRL's hub link to `None`."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        card = os.path.join(self.args.output_dir, "README.md")
        if not (self.is_world_process_zero() and os.path.isfile(card)):
            return
        with open(card, encoding="utf-8") as f:
            text = f.read()
        source = getattr(self.model.config, "_name_or_path", "") or ""
        local = f"the local model `{os.path.basename(os.path.normpath(source))}`" if source else "a local model"
        fixed = text.replace("[None](https://huggingface.co/None)", local).replace("base_model: None\n", "")
        fixed = fixed.replace('model="None"', f'model="{self.args.output_dir}"')
        if "## RAFT settings" not in fixed:
            fixed = fixed.replace("### Framework versions", f"{self._settings_section()}\n### Framework versions", 1)
        if fixed != text:
            with open(card, "w", encoding="utf-8") as f:
                f.write(fixed)

    def __init__(
        self,
        model,
        args: RAFTConfig | TrainingArguments | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        *,
        teacher_model=None,
        callbacks=None,
        **kwargs,
    ):
        args = as_raft_config(args, model)
        if train_dataset is None:
            raise ValueError("`train_dataset` is required")
        qa_format = functools.cache(lambda: _qa_prompt_format(model, processing_class, args))  # question/answer rows
        train_dataset = normalize_dataset(train_dataset, "train", qa_format)
        if isinstance(eval_dataset, dict):
            eval_dataset = {name: normalize_dataset(ds, name, qa_format) for name, ds in eval_dataset.items()}
        elif eval_dataset is not None:
            eval_dataset = normalize_dataset(eval_dataset, "eval", qa_format)
        self.balancer = RAFTLossBalancer(args.ema_beta, args.ema_eps, args.loss_balancing, args.fixed_lambda)
        super().__init__(
            model,
            args,
            data_collator,
            train_dataset,
            eval_dataset,
            processing_class,
            callbacks=[*(callbacks or []), self.balancer],
            **kwargs,
        )
        if args.use_distillation:  # RAFT's keys around the SFT batch of TRL's collator, or of the one passed
            self.data_collator = RAFTDataCollator(
                self._tokenizer.pad_token_id, args.pad_to_multiple_of, sft_collator=data_collator
            )
        self.teacher = self._resolve_teacher(teacher_model) if args.use_distillation else None
        self.rollout_generation_config = self._rollout_generation_config()
        self.stop_strings = resolve_stop_strings(args.stop_strings, self._tokenizer)
        if args.use_distillation:
            self._check_stop_strings(self.train_dataset)
        self.vllm_rollouts = VLLMRollouts(self) if args.use_distillation and args.use_vllm else None
        self._zero3 = self.is_deepspeed_enabled and self.accelerator.state.deepspeed_plugin.zero_stage == 3
        # Recompute the student's LM-head chunks in backward, except for a frozen head under ZeRO-3: DeepSpeed
        # re-partitions a frozen weight after the recomputed forward, which torch's checkpoint then rejects (it saw
        # the full weight). Without recomputation the chunks' logits are kept for backward, as SFTTrainer's loss does.
        head = self.accelerator.unwrap_model(self.model).get_output_embeddings()
        self._recompute_head_chunks = not self._zero3 or any(p.requires_grad for p in head.parameters())
        self._num_rollouts_in_window: int | None = None
        self._unsampled_window: list[dict] | None = None  # set by `get_batch_samples`, sampled by `training_step`
        self.balancer.distribute(
            lambda totals: self.accelerator.reduce(totals, "sum"),
            self.accelerator.num_processes,
            counts_cover_all_ranks=args.average_tokens_across_devices and args.world_size > 1,
            device=self.accelerator.device,
        )

    def _load_callback_state(self) -> None:
        """`restore_callback_states_from_checkpoint`: every callback but the balancer, which restores its own state
        (`RAFTLossBalancer.on_train_begin`) instead of being replaced by a new instance the trainer would not hold."""
        saved = {
            n: self.state.stateful_callbacks.pop(n)
            for n in RAFTLossBalancer.SAVED_NAMES
            if n in self.state.stateful_callbacks
        }
        try:
            super()._load_callback_state()
        finally:
            self.state.stateful_callbacks.update(saved)

    def _save_checkpoint(self, model, trial) -> None:
        """`Trainer._save_checkpoint`; a write that fails (a full disk) raises `CheckpointWriteError` naming the
        checkpoint folder, the cause and the free space, instead of torch's "unexpected pos 56640 vs 56528"."""
        try:
            super()._save_checkpoint(model, trial)
        except Exception as error:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            from .errors import CheckpointWriteError

            folder = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            failure = CheckpointWriteError.from_failure(folder, error)
            if failure is None:
                raise
            raise failure from error

    # ----------------------------------------------------------------------------------------------- setup
    def _resolve_teacher(self, teacher_model):
        # Loaded with the student's loading options, `teacher_model_init_kwargs` winning key by key (teacher.py).
        from trl.trainer.utils import get_config_model_id

        from .teacher import teacher_init_kwargs
        from .teacher_prompts import context_overflow, model_context

        student = self.model.get_base_model() if is_peft_model(self.model) else self.model
        add_hidden_states_output(student)
        if teacher_model is not None:
            same = isinstance(teacher_model, str) and teacher_model == get_config_model_id(student.config)
            teacher = load_teacher(teacher_model, teacher_init_kwargs(self.args, same_checkpoint=same))
        elif is_peft_model(self.model):
            teacher = None  # the adapter-disabled base is the original model: no second copy of the weights
        else:
            kwargs = teacher_init_kwargs(self.args, same_checkpoint=True, dtype=student.dtype)  # dtype as loaded
            teacher = reload_original(student, kwargs)
        problem = context_overflow(  # the rows that get rollouts and teacher passes (evaluation is SFT only)
            self.train_dataset,
            "train",
            completion_length=self.args.max_completion_length,
            teacher_context=model_context((teacher or student).config),
            student_context=model_context(student.config),
            budget=self.args.max_teacher_prompt_length or self.args.max_length,
        )
        if problem:
            raise ConfigError(problem)
        if teacher is None:
            return None
        vocab = (student.config.get_text_config().vocab_size, teacher.config.get_text_config().vocab_size)
        if vocab[0] != vocab[1]:
            grown = (
                f" `chat_template_path` ({self.args.chat_template_path!r}) added tokens to the student's tokenizer and "
                "embeddings; the teacher you passed lacks them: leave `teacher_model` unset (the original model is "
                "then loaded again and given the same tokens), pass a teacher with the same tokenizer, or train with "
                "LoRA (`peft_config`), whose adapter-disabled base is the teacher."
                if getattr(self.args, "chat_template_path", None)
                else ""
            )
            raise ConfigError(
                f"The teacher's vocabulary ({vocab[1]} tokens) differs from the student's ({vocab[0]}): the teacher "
                "scores the student's token ids and its top-K ids index the student's LM head, so both must share "
                f"the tokenizer.{grown}"
            )
        if self.is_deepspeed_enabled:
            return prepare_deepspeed(teacher, self.accelerator)
        return teacher.to(self.accelerator.device)

    def _rollout_generation_config(self) -> GenerationConfig:
        eos = self.model.generation_config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        self.eos_token_ids = list(dict.fromkeys([self._tokenizer.eos_token_id, *eos]))
        return GenerationConfig(
            max_new_tokens=self.args.max_completion_length,
            num_return_sequences=self.args.num_generations,
            do_sample=True,
            temperature=self.args.temperature,
            top_p=self.args.top_p,
            top_k=self.args.top_k,
            repetition_penalty=1.0,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self._tokenizer.pad_token_id,
            use_cache=True,
        )

    def _check_stop_strings(self, dataset) -> None:
        """Say which strings end rollouts, and warn when the training answers themselves contain them."""
        if self.stop_strings and self.args.stop_strings is None:
            logger.info(
                f"Rollouts end at EOS or at {self.stop_strings} (the tokenizer has no chat template); set "
                "`stop_strings` to change this."
            )
        if not (self.stop_strings and isinstance(dataset, Dataset) and "completion" in dataset.column_names):
            return
        answers = [completion_text(c) for c in dataset["completion"]]
        hits = sum(
            any(s in a.removesuffix(self._tokenizer.eos_token or "") for s in self.stop_strings) for a in answers
        )
        if hits:
            logger.warning(
                f"{hits} of {len(answers)} training answers contain a rollout stop string {self.stop_strings}: the "
                "student's rollouts end there while its SFT targets go on. Set `stop_strings` to strings that end "
                "your answers (or [] to rely on EOS)."
            )

    def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        build_teacher_prompts = (
            args.use_distillation and args.answer_conditioning and "input_ids" not in get_dataset_column_names(dataset)
        )
        if build_teacher_prompts:
            check_chat_template(self._tokenizer, dataset)
        rows_before = len(dataset) if isinstance(dataset, Dataset) else None
        raw = dataset
        dataset = super()._prepare_dataset(dataset, processing_class, args, packing, formatting_func, dataset_name)
        if rows_before is not None and (dropped := rows_before - len(dataset)):
            if dropped == rows_before:
                raise DataError(self._all_rows_dropped(raw, args, dataset_name))
            logger.warning(
                f"{dropped} of {rows_before} rows of the {dataset_name} dataset were dropped: their prompt alone fills "
                f"`max_length` ({args.max_length}), leaving no answer token to train on. Raise `max_length` to keep them."
            )
        if build_teacher_prompts:  # from the student's prompt ids as TRL tokenised them (teacher_prompts.py)
            dataset = self._add_teacher_prompts(dataset, args, dataset_name)
        return dataset

    def _all_rows_dropped(self, raw, args, dataset_name) -> str:
        """The error for a dataset whose every prompt fills `max_length`, with the prompts' token counts."""

        def prompt_tokens(prompt) -> int:
            if isinstance(prompt, list):  # conversational: as TRL renders it, with the generation prompt
                prompt = self._tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
                return len(self._tokenizer(prompt, add_special_tokens=False)["input_ids"])
            return len(self._tokenizer(prompt)["input_ids"])

        lengths = [prompt_tokens(p) for p in raw["prompt"]]
        return (
            f"Every one of the {len(lengths)} rows of the {dataset_name} dataset was dropped: its prompt alone fills "
            f"`max_length` ({args.max_length}), leaving no answer token to train on. The prompts are "
            f"{min(lengths)}–{max(lengths)} tokens long; raise `max_length` above {max(lengths)} (plus room for the "
            "answers), or shorten the prompts."
        )

    def _add_teacher_prompts(self, dataset, args, dataset_name):
        is_map_style = isinstance(dataset, Dataset)  # `IterableDataset.map` takes neither `desc` nor `num_proc`
        budget = args.max_teacher_prompt_length or args.max_length
        dataset = dataset.map(
            add_teacher_prompt_ids,
            fn_kwargs={
                "tokenizer": self._tokenizer,
                "template": args.teacher_template,
                "max_length": budget,
                "chat_template": self.chat_template,
            },
            **(
                {"desc": f"Building teacher prompts of the {dataset_name} dataset", "num_proc": args.dataset_num_proc}
                if is_map_style
                else {}
            ),
        )
        checked = (
            dataset["teacher_boundary_problem"] if is_map_style else [next(iter(dataset))["teacher_boundary_problem"]]
        )
        problems = [p for p in checked if p]
        if problems:
            logger.warning(
                f"{len(problems)} of {len(checked)} teacher prompts of the {dataset_name} dataset end differently from "
                f"the student's prompt, so the teacher scores the rollouts after other tokens than the student wrote "
                f"them after: {problems[0]}. Put no text after {{prompt}} in `teacher_template` for plain-text data."
            )
        if is_map_style and len(dataset) and not any(dataset["reference_tokens"]):
            raise DataError(
                f"The teacher prompt budget of {budget} tokens (`max_teacher_prompt_length`, else `max_length`) left "
                f"no token of any reference in the {dataset_name} dataset: the teacher would never see ŷ. Raise "
                "`max_teacher_prompt_length` (the question and the template alone already take the budget)."
            )
        if is_map_style and (cut := sum(dataset["reference_truncated"])):
            logger.warning(
                f"{cut} of {len(dataset)} references in the {dataset_name} dataset were cut to fit the teacher "
                f"prompt budget of {budget} tokens (questions are never cut); raise `max_teacher_prompt_length` "
                "to keep them whole."
            )
        return dataset

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if "teacher_prompt_ids" not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, "teacher_prompt_ids"]

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """The accumulation window's micro-batches, kept so that the window's first `training_step` samples all of
        their rollouts (`_sample_window`) before any of them is trained on.

        Only `Trainer`'s training loop calls this, once per optimizer step, so a window is pending exactly when the
        trainer is training, whatever the module's train/eval flag says (a `from_pretrained` model is in eval mode
        until the first `training_step`). The sampling waits for `training_step` because a resumed run's RNG state is
        restored by the loop after this call: rollouts sampled here would not be the uninterrupted run's."""
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.args.use_distillation and batch_samples:
            self._unsampled_window = batch_samples
        return batch_samples, num_items_in_batch

    def _sample_window(self, model, batch_samples: list[dict]) -> None:
        """Before the window's first micro-batch: each micro-batch gets its rollouts (`completion_ids`,
        `completion_mask`, `completion_finished`; the weights only change at the optimizer step, so this is as
        on-policy as sampling inside each micro-batch), the window's rollouts are counted over all ranks (they
        normalise L_KL), and on the first step λ is set from the whole window, so that neither depends on how the
        window is split. The model is put in training mode first, as `training_step` would next, so that the first
        window's gradient-free pass computes the losses the step will (dropout included)."""
        model.train()
        count = torch.tensor(
            sum(len(b["input_ids"]) for b in batch_samples) * self.args.num_generations, device=self.args.device
        )
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            count = self.accelerator.gather(count).sum()
        self._num_rollouts_in_window = int(count)
        for batch in batch_samples:
            rollouts = self._sample_rollouts(model, batch["prompt_input_ids"], batch["prompt_attention_mask"])
            batch.update(
                completion_ids=rollouts.completion_ids,
                completion_mask=rollouts.completion_mask,
                completion_finished=rollouts.finished,
            )
        if self.balancer.needs_first_window:
            self.balancer.first_window(self._window_totals(batch_samples))

    # ------------------------------------------------------------------------------------------ the step
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """L = L_SFT + λ·L_KL for one micro-batch: rollouts → teacher top-K → student forward → losses → λ."""
        raft_inputs = {key: inputs.pop(key) for key in RAFT_BATCH_KEYS if key in inputs}
        if not (self.args.use_distillation and self.model.training):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if return_outputs:
            raise ValueError("RAFTTrainer does not return model outputs from a training step.")
        terms = self._raft_terms(model, inputs, raft_inputs)
        self._log_micro_batch(inputs, terms)
        if num_items_in_batch is None:  # the Trainer averages micro-batch losses itself
            sft_loss, kl_loss = micro_batch_losses(terms.nll_sum, terms.num_sft_tokens, terms.kl_per_sequence)
            window_share = 1.0 / self.current_gradient_accumulation_steps
        else:  # normalised by the whole accumulation window (all ranks), as SFTTrainer does
            sft_loss, kl_loss = window_losses(
                terms.nll_sum, terms.kl_per_sequence, num_items_in_batch, self._num_rollouts_in_window
            )
            window_share = 1.0
        lam = self.balancer.observe(sft_loss, kl_loss, window_share)
        self._metrics["train"]["raft/lambda"].append(lam)
        if not torch.isfinite(sft_loss + kl_loss):
            return self._skip_non_finite(model, sft_loss, kl_loss)
        loss = sft_loss + lam * kl_loss
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients; counts cover all ranks
        return loss

    def _raft_terms(self, model, inputs, raft_inputs) -> RAFTTerms:
        """What the loss is made of: the rollouts (sampled for the window, else now), the teacher's top-K over
        them, one student forward over [x ⊕ ŷ] and [x ⊕ z], and both losses from its hidden states."""
        if "completion_ids" in raft_inputs:
            rollouts = Rollouts(
                raft_inputs["completion_ids"], raft_inputs["completion_mask"], raft_inputs.get("completion_finished")
            )
        else:
            rollouts = self._sample_rollouts(
                model, raft_inputs["prompt_input_ids"], raft_inputs["prompt_attention_mask"]
            )
        student_chunks, teacher_chunks = self._lm_head_chunk_counts(inputs["labels"], rollouts)
        teacher = self._teacher_topk(model, raft_inputs, rollouts, teacher_chunks)
        nll_sum, kl_per_token = self._student_losses(model, inputs, raft_inputs, rollouts, teacher, student_chunks)
        num_sft_tokens = inputs["labels"][:, 1:].ne(-100).sum()
        kl_per_sequence = sequence_means(kl_per_token, rollouts.completion_mask)
        return RAFTTerms(rollouts, teacher, nll_sum, num_sft_tokens, kl_per_token, kl_per_sequence)

    def _skip_non_finite(self, model, sft_loss: torch.Tensor, kl_loss: torch.Tensor) -> torch.Tensor:
        """A micro-batch with a NaN/inf loss gives every trainable parameter a zero gradient (the weights stay finite
        and DDP still reduces every gradient); the balancer has counted it and kept it out of the EMAs."""
        sft, kl = sft_loss.item(), kl_loss.item()
        logger.warning(
            f"Step {self.state.global_step}: non-finite RAFT loss (SFT {sft}, KL {kl}); this micro-batch "
            "is skipped (zero gradient) and kept out of λ's EMAs.",
            main_process_only=False,
        )
        self._metrics["train"]["raft/skipped_batches"].append(1.0)
        return sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)

    def _sample_rollouts(self, model, prompt_ids, prompt_mask) -> Rollouts:
        """z ~ p_θ(·|x) from the current student: vLLM when enabled, else `generate` (dropout off, ZeRO-3 weights
        gathered unless `ds3_gather_for_generation=False`); each ends at EOS or a stop string."""
        start = time.perf_counter()
        if self.vllm_rollouts is not None:
            rollouts = self.vllm_rollouts.sample(
                prompt_ids,
                prompt_mask,
                global_step=self.state.global_step,
                eos_token_ids=self.eos_token_ids,
                pad_token_id=self._tokenizer.pad_token_id,
            )
        else:
            with unwrap_model_for_generation(
                model,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped:
                was_training = unwrapped.training
                unwrapped.eval()
                try:
                    rollouts = sample_rollouts(
                        unwrapped,
                        prompt_ids,
                        prompt_mask,
                        generation_config=self.rollout_generation_config,
                        eos_token_ids=self.eos_token_ids,
                        tokenizer=self._tokenizer,
                        stop_strings=self.stop_strings,
                    )
                finally:
                    unwrapped.train(was_training)
        self._metrics["train"]["raft/generation_time"].append(time.perf_counter() - start)
        return rollouts

    def _lm_head_chunk_counts(self, labels, rollouts: Rollouts) -> tuple[int | None, int | None]:
        """Under ZeRO-3, how many LM-head chunks every rank runs (the student's SFT tokens + rollout positions, the
        teacher's rollout positions): the largest count of any rank, so that all ranks join the same number of
        head-weight gathers. `None`s (no padding) otherwise."""
        if not self._zero3:
            return None, None
        chunk, positions = self.args.distillation_chunk_size, rollouts.completion_ids.numel()
        local = torch.tensor(
            [num_row_chunks(int(labels[:, 1:].ne(-100).sum()) + positions, chunk), num_row_chunks(positions, chunk)],
            device=labels.device,
        )
        student_chunks, teacher_chunks = self.accelerator.reduce(local, "max").tolist()
        return student_chunks, teacher_chunks

    def _teacher_topk(self, model, raft_inputs, rollouts: Rollouts, num_chunks: int | None = None) -> TeacherTopK:
        """The teacher's top-K over each completion position, seeing the reference (or only the prompt)."""
        if self.args.answer_conditioning:
            prompt_ids, prompt_mask = raft_inputs["teacher_prompt_ids"], raft_inputs["teacher_prompt_attention_mask"]
        else:  # plain on-policy distillation: the teacher sees what the student sees
            prompt_ids, prompt_mask = raft_inputs["prompt_input_ids"], raft_inputs["prompt_attention_mask"]
        input_ids, attention_mask, position_ids = append_completions(prompt_ids, prompt_mask, rollouts)
        return teacher_topk_over_completions(
            self.accelerator.unwrap_model(model),
            self.teacher,
            input_ids,
            attention_mask,
            position_ids,
            rollouts.completion_ids.size(1),
            k=self.args.distillation_topk,
            temperature=self.args.distillation_temperature,
            chunk_size=self.args.distillation_chunk_size,
            num_chunks=num_chunks,
        )

    def _student_hidden_states(
        self, model, inputs, raft_inputs, rollouts: Rollouts
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward of the (wrapped) student over the SFT rows [x ⊕ ŷ] and the rollout rows [x ⊕ z] together.

        Returns the hidden states that predict the SFT labels `(B·(L−1), H)` (position t predicts label t+1) and the
        rollout tokens `(N, C, H)`."""
        rollout_ids, rollout_mask, _ = append_completions(
            raft_inputs["prompt_input_ids"], raft_inputs["prompt_attention_mask"], rollouts
        )
        num_sft, rollout_length = inputs["input_ids"].size(0), rollout_ids.size(1)
        input_ids = pad([*inputs["input_ids"], *rollout_ids], padding_value=self._tokenizer.pad_token_id)
        attention_mask = pad([*inputs["attention_mask"], *rollout_mask], padding_value=0)
        hidden = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions_from_mask(attention_mask),
            return_last_hidden_state=True,
        )
        length = rollouts.completion_ids.size(1)
        sft_hidden = hidden[:num_sft, : inputs["labels"].size(1) - 1].reshape(-1, hidden.size(-1))
        return sft_hidden, hidden[num_sft:, rollout_length - length - 1 : rollout_length - 1]

    def _student_losses(
        self, model, inputs, raft_inputs, rollouts: Rollouts, teacher: TeacherTopK, num_chunks: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Σ NLL of ŷ `()` and T²·KL per rollout position `(N, C)`: the student's hidden states from one forward
        (`_student_hidden_states`) through its LM head in chunks (`losses.student_losses`)."""
        sft_hidden, rollout_hidden = self._student_hidden_states(model, inputs, raft_inputs, rollouts)
        return student_losses(
            sft_hidden,
            inputs["labels"][:, 1:].reshape(-1),
            rollout_hidden,
            rollouts.completion_mask,
            teacher,
            lm_head_of(self.accelerator.unwrap_model(model)),
            temperature=self.args.distillation_temperature,
            chunk_size=self.args.distillation_chunk_size,
            num_chunks=num_chunks,
            recompute=self._recompute_head_chunks,
        )

    # --------------------------------------------------------------------------------------- balancing
    @torch.no_grad()
    def _window_totals(self, batch_samples) -> torch.Tensor:
        """`[Σ NLL, SFT tokens, Σ KL per rollout, rollouts]` over the window's micro-batches on this rank, from a
        gradient-free pass with their sampled rollouts (micro-batches with non-finite losses left out): the
        balancer's first-step λ."""
        totals = torch.zeros(4, dtype=torch.float64)
        for batch in batch_samples:
            inputs = self._prepare_inputs(dict(batch))
            raft_inputs = {key: inputs.pop(key) for key in RAFT_BATCH_KEYS if key in inputs}
            terms = self._raft_terms(self.model_wrapped, inputs, raft_inputs)
            kl = terms.kl_per_sequence.double()
            values = torch.stack(
                [terms.nll_sum.double(), terms.num_sft_tokens.double(), kl.sum(), torch.tensor(kl.numel()).double()]
            ).cpu()
            if torch.isfinite(values).all():
                totals += values
        return totals

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._unsampled_window is not None:  # the window's first micro-batch
            window, self._unsampled_window = self._unsampled_window, None
            self._sample_window(model, window)
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.args.use_distillation and self.accelerator.sync_gradients:  # the optimizer step ends
            ema_sft, ema_kl = self.balancer.end_step()
            self._metrics["train"]["raft/ema_sft"].append(ema_sft)
            self._metrics["train"]["raft/ema_kl"].append(ema_kl)
        return loss

    def _log_micro_batch(self, inputs, terms: RAFTTerms) -> None:
        """Record this micro-batch's losses, teacher and rollout statistics and SFT token count over all ranks (one
        gather). `raft/kl_first_token` and `raft/teacher_first_token_entropy` watch the prompt/answer boundary: a
        teacher that reads another boundary than the student shows a first-token KL far above `raft/kl_loss`."""
        rollouts, teacher = terms.rollouts, terms.teacher
        mask = rollouts.completion_mask.bool()
        lengths = rollouts.lengths.float()
        finished = rollouts.finished
        if finished is None:
            finished = torch.isin(rollouts.completion_ids, torch.tensor(self.eos_token_ids, device=mask.device)).any(
                -1
            )
        first = teacher.logprobs[:, 0].float()
        first_entropy = -torch.where(first > float("-inf"), first.exp() * first, 0.0).sum(-1)
        local = torch.stack(
            [
                terms.nll_sum.detach() / terms.num_sft_tokens.clamp(min=1),
                terms.kl_per_sequence.detach().mean(),
                torch.where(mask, teacher.mass, 0.0).sum() / mask.sum().clamp(min=1),
                terms.kl_per_token.detach()[:, 0].mean(),
                first_entropy.mean(),
                lengths.mean(),
                (~finished).float().mean(),
                lengths.min(),
                lengths.max(),
                inputs["attention_mask"].sum(),
            ]
        ).float()
        ranks = self.accelerator.gather(local[None])  # (P, 10)
        names = (
            "raft/sft_loss",
            "raft/kl_loss",
            "raft/teacher_topk_mass",
            "raft/kl_first_token",
            "raft/teacher_first_token_entropy",
            "completions/mean_length",
            "completions/clipped_ratio",
        )
        metrics = dict(zip(names, ranks[:, : len(names)].mean(0).tolist()))
        metrics["completions/min_length"] = ranks[:, 7].min().item()
        metrics["completions/max_length"] = ranks[:, 8].max().item()
        for name, value in metrics.items():
            self._metrics["train"][name].append(value)
        # SFTTrainer's `num_tokens`: tokens of the SFT batches seen so far, all ranks
        self._total_train_tokens += int(ranks[:, 9].sum().item()) // self._tp_size
        self._metrics["train"]["num_tokens"] = [self._total_train_tokens]


@dataclass
class RAFTTerms:
    """What one micro-batch's RAFT loss is made of (see `RAFTTrainer._raft_terms`).

    Attributes:
        rollouts (`Rollouts`): the student's sampled completions, N rows.
        teacher (`TeacherTopK`): the teacher's top-K ids and log q̃, `(N, C, K)`, and its top-K mass `(N, C)`.
        nll_sum (`torch.Tensor`): `()` Σ −log p(ŷ_t) over the SFT tokens.
        num_sft_tokens (`torch.Tensor`): `()` number of SFT tokens in the micro-batch.
        kl_per_token (`torch.Tensor`): `(N, C)` T²·KL(q̃‖p̃) per rollout position, 0 at padding.
        kl_per_sequence (`torch.Tensor`): `(N,)` its mean over each rollout's tokens.
    """

    rollouts: Rollouts
    teacher: TeacherTopK
    nll_sum: torch.Tensor
    num_sft_tokens: torch.Tensor
    kl_per_token: torch.Tensor
    kl_per_sequence: torch.Tensor


def _qa_prompt_format(model, processing_class, args) -> str:
    """How question/answer rows become prompts: as a chat turn when the tokenizer has a chat template (or
    `chat_template_path` gives one), else as the plain `Question: …\nAnswer:` prompt."""
    if getattr(args, "chat_template_path", None):
        return "conversational"
    if processing_class is None:
        from transformers import AutoTokenizer
        from trl.trainer.utils import get_config_model_id

        name = model if isinstance(model, str) else get_config_model_id(model.config)
        options = args.model_init_kwargs or {}  # the student's loading options, as TRL loads its tokenizer
        processing_class = AutoTokenizer.from_pretrained(
            name,
            revision=options.get("revision"),
            trust_remote_code=options.get("trust_remote_code", getattr(args, "trust_remote_code", False)),
        )
    return qa_prompt_format(processing_class)
