"""RAFTTrainer end to end on a tiny model: SFT equivalence, GA invariance, EOS-first rollouts, LoRA, resume."""

import math
import os

import pytest
import torch
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from raft_trainer import RAFTConfig, RAFTTrainer
from raft_trainer.data import normalize_dataset
from raft_trainer.rollouts import Rollouts
from raft_trainer.stopping import mask_after_first_eos

from conftest import build_model, build_tokenizer

COMMON = dict(report_to=[], save_strategy="no", use_cpu=True, seed=0, logging_steps=1, learning_rate=1e-3, bf16=False,
              dataloader_drop_last=True)  # fmt: skip


def make_trainer(tmp_path, dataset, tokenizer=None, teacher_seed=0, **config):
    """A RAFTTrainer on an in-memory tiny model; the teacher is an identical copy built from the same seed (or another
    model, from `teacher_seed`)."""
    tokenizer = tokenizer or build_tokenizer()
    config = {**COMMON, "max_completion_length": 6, "distillation_topk": 16, **config}
    args = RAFTConfig(output_dir=str(tmp_path / "out"), **config)
    teacher = build_model(tokenizer, seed=teacher_seed) if args.use_distillation else None
    return RAFTTrainer(build_model(tokenizer), args=args, train_dataset=dataset, processing_class=tokenizer,
                       teacher_model=teacher)  # fmt: skip


def fixed_rollouts(eos_first=False):
    """Deterministic rollouts that depend only on each prompt's real tokens (so any batching gives the same ones)."""

    def sample(self, model, prompt_ids, prompt_mask):
        eos, rows = self.eos_token_ids[0], []
        for ids, mask in zip(prompt_ids, prompt_mask):
            real = ids[mask.bool()].tolist()
            n = 0 if eos_first else 1 + sum(real) % 4
            rows.append([(real[-1] + j) % 20 + 8 for j in range(n)] + [eos])
        width = max(map(len, rows))
        ids = torch.tensor([r + [self._tokenizer.pad_token_id] * (width - len(r)) for r in rows])
        ids = ids.repeat_interleave(self.args.num_generations, dim=0)
        mask = mask_after_first_eos(ids, self.eos_token_ids)
        return Rollouts(ids, mask)

    return sample


class GradientSnapshot(TrainerCallback):
    def __init__(self):
        self.grads = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})


def losses(trainer):
    return [log["loss"] for log in trainer.state.log_history if "loss" in log]


def test_raft_without_distillation_logs_the_same_losses_as_sft(tmp_path, plain_dataset):
    tokenizer = build_tokenizer()
    steps = dict(max_steps=4, per_device_train_batch_size=2)
    sft = SFTTrainer(build_model(tokenizer), args=SFTConfig(output_dir=str(tmp_path / "sft"), **COMMON, **steps),
                     train_dataset=plain_dataset, processing_class=tokenizer)  # fmt: skip
    sft.train()
    raft = make_trainer(tmp_path, plain_dataset, tokenizer=tokenizer, use_distillation=False, **steps)
    raft.train()
    assert len(losses(raft)) == 4
    assert losses(raft) == pytest.approx(losses(sft), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("balancer_state", [None, {"step": 3, "ema_sft": 2.0, "ema_kl": 0.05}], ids=["fresh", "later"])
def test_gradient_and_lambda_are_invariant_to_gradient_accumulation(tmp_path, plain_dataset, monkeypatch,
                                                                    balancer_state):  # fmt: skip
    """8 rows × 1 micro-batch and 2 rows × 4 micro-batches give the same λ and gradient: from a fresh balancer (λ of
    the first step, set from the whole window) and from a restored one (λ from the EMAs)."""
    monkeypatch.setattr(RAFTTrainer, "_sample_rollouts", fixed_rollouts())
    grads, lambdas = [], []
    for batch, accumulation in [(8, 1), (2, 4)]:
        snapshot = GradientSnapshot()
        trainer = make_trainer(tmp_path, plain_dataset, max_steps=1, per_device_train_batch_size=batch,
                               gradient_accumulation_steps=accumulation, max_grad_norm=0.0, teacher_seed=1)  # fmt: skip
        trainer.add_callback(snapshot)
        if balancer_state:
            trainer.balancer.load_state_dict(balancer_state)  # a λ that is not 1
        trainer.train()
        grads.append(snapshot.grads[0])
        lambdas.append(logged_lambda(trainer, 1))
    assert lambdas[0] == pytest.approx(lambdas[1], rel=1e-4)  # before the window rule: 4.344 vs 5.772 on Gemma
    if balancer_state is None:
        assert lambdas[0] != pytest.approx(1.0) and math.isfinite(lambdas[0])
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:  # float32 noise: up to ~1e-5 where λ·L_KL dominates (λ ≈ 330 here)
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=3e-5, msg=name)


def test_kl_term_changes_the_gradient(tmp_path, plain_dataset, monkeypatch):
    """The trivial case is false first: the distillation term really reaches the gradient."""
    monkeypatch.setattr(RAFTTrainer, "_sample_rollouts", fixed_rollouts())
    grads = []
    for lam in (0.0, 5.0):
        snapshot = GradientSnapshot()
        trainer = make_trainer(tmp_path, plain_dataset, max_steps=1, per_device_train_batch_size=4,
                               loss_balancing="fixed", fixed_lambda=lam, max_grad_norm=0.0)  # fmt: skip
        trainer.add_callback(snapshot)
        trainer.train()
        grads.append(snapshot.grads[0])
    name = next(iter(grads[0]))
    assert not torch.allclose(grads[0][name], grads[1][name])


def test_rollout_that_ends_at_once_gives_finite_loss(tmp_path, plain_dataset, monkeypatch):
    monkeypatch.setattr(RAFTTrainer, "_sample_rollouts", fixed_rollouts(eos_first=True))
    trainer = make_trainer(tmp_path, plain_dataset, max_steps=2, per_device_train_batch_size=4)
    trainer.train()
    logs = [log for log in trainer.state.log_history if "raft/kl_loss" in log]
    assert len(logs) == 2
    for log in logs:
        assert math.isfinite(log["loss"]) and math.isfinite(log["raft/kl_loss"]) and math.isfinite(log["raft/lambda"])
        assert log["completions/mean_length"] == 1.0


def test_real_sampling_logs_losses_lambda_and_rollout_metrics(tmp_path, plain_dataset):
    trainer = make_trainer(tmp_path, plain_dataset, max_steps=2, per_device_train_batch_size=4, num_generations=2)
    trainer.train()
    log = next(log for log in trainer.state.log_history if "raft/lambda" in log)
    for key in ("raft/sft_loss", "raft/kl_loss", "raft/ema_sft", "raft/ema_kl", "raft/teacher_topk_mass",
                "completions/mean_length", "completions/clipped_ratio", "raft/generation_time"):  # fmt: skip
        assert key in log and math.isfinite(log[key]), key
    assert 0.0 < log["raft/teacher_topk_mass"] <= 1.0
    assert 1 <= log["completions/mean_length"] <= 6
    assert log["raft/lambda"] == pytest.approx(log["raft/sft_loss"] / log["raft/kl_loss"], rel=1e-3)  # step 1


def test_default_teacher_is_reloaded_frozen_original(tmp_path, plain_dataset, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    args = RAFTConfig(output_dir=str(tmp_path / "out"), **COMMON, max_steps=2, per_device_train_batch_size=4,
                      max_completion_length=4, distillation_topk=8)  # fmt: skip
    trainer = RAFTTrainer(tiny_model_dir, args=args, train_dataset=plain_dataset, processing_class=tokenizer)
    student, teacher = trainer.model, trainer.teacher
    assert teacher is not None and teacher is not student and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert {p.data_ptr() for p in teacher.parameters()}.isdisjoint(p.data_ptr() for p in student.parameters())
    trainer.train()
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    for (name, p), q in zip(teacher.named_parameters(), original.parameters()):
        torch.testing.assert_close(p, q, msg=name)  # the teacher did not move
    assert any(not torch.equal(p, q) for p, q in zip(student.parameters(), original.parameters()))


def test_lora_teacher_is_the_adapter_disabled_base(tmp_path, plain_dataset):
    from peft import LoraConfig

    tokenizer = build_tokenizer()
    base = build_model(tokenizer)
    original_state = {k: v.clone() for k, v in base.state_dict().items()}
    base_params = sum(p.numel() for p in base.parameters())
    args = RAFTConfig(output_dir=str(tmp_path / "out"), **COMMON, max_steps=3, per_device_train_batch_size=4,
                      max_completion_length=4, distillation_topk=8)  # fmt: skip
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    trainer = RAFTTrainer(base, args=args, train_dataset=plain_dataset, processing_class=tokenizer, peft_config=lora)
    assert trainer.teacher is None
    lora_params = sum(p.numel() for n, p in trainer.model.named_parameters() if "lora_" in n)
    assert sum(p.numel() for p in trainer.model.parameters()) == base_params + lora_params  # no second copy
    trainer.train()
    assert all(math.isfinite(x) for x in losses(trainer))

    reference = build_model(tokenizer)
    reference.load_state_dict(original_state)
    ids = torch.tensor([[1, 9, 10, 11, 12]])
    model = trainer.model.eval()
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        with model.disable_adapter():
            disabled = model(input_ids=ids).logits
        expected = reference(input_ids=ids).logits
    assert not torch.allclose(adapted, expected, atol=1e-4)  # the adapter changes the output...
    torch.testing.assert_close(disabled, expected)  # ...and disabling it gives back the original model


def logged_lambda(trainer, step):
    return next(
        log["raft/lambda"] for log in trainer.state.log_history if log.get("step") == step and "raft/lambda" in log
    )


def test_lambda_identical_after_resume(tmp_path, plain_dataset):
    config = dict(max_steps=4, per_device_train_batch_size=2, save_strategy="steps", save_steps=2)
    full = make_trainer(tmp_path / "full", plain_dataset, **config)
    full.train()

    interrupted = make_trainer(tmp_path / "half", plain_dataset, **config)
    interrupted.args.max_steps = 2  # stops after writing checkpoint-2, as a killed run would leave it
    interrupted.train()
    saved = interrupted.balancer.state_dict()
    assert saved["step"] == 2

    resumed = make_trainer(tmp_path / "half", plain_dataset, **config)
    assert resumed.balancer.state_dict() != saved  # a fresh trainer starts without EMA state...
    resumed.train(resume_from_checkpoint=str(tmp_path / "half" / "out" / "checkpoint-2"))
    # ...and the resumed run's first step uses exactly the λ of the uninterrupted run (it depends only on the EMA
    # state after step 2; later steps also depend on freshly sampled rollouts).
    assert logged_lambda(resumed, 3) == logged_lambda(full, 3)
    assert logged_lambda(resumed, 3) != logged_lambda(resumed, 1)
    assert resumed.balancer.step == 4


def test_packing_is_refused_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="prompt boundary"):
        RAFTConfig(output_dir=str(tmp_path), packing=True, use_cpu=True, bf16=False)
    RAFTConfig(output_dir=str(tmp_path), packing=True, use_distillation=False, use_cpu=True, bf16=False)  # SFT may


def test_answer_conditioning_switch_changes_what_the_teacher_sees(tmp_path, plain_dataset):
    on = make_trainer(tmp_path, plain_dataset, max_steps=1, per_device_train_batch_size=4)
    row = on.train_dataset[0]
    tokenizer = on._tokenizer
    teacher_text = tokenizer.decode(row["teacher_prompt_ids"])
    # The word-level test tokenizer maps "knowledge:" to <unk>; the reference and the question are both there.
    assert teacher_text.startswith("Background reference")
    assert "The capital of France is Paris ." in teacher_text and "What is the capital of France ?" in teacher_text
    off = make_trainer(tmp_path, plain_dataset, max_steps=1, per_device_train_batch_size=4, answer_conditioning=False)
    assert "teacher_prompt_ids" not in off.train_dataset.column_names
    batch = off.data_collator([off.train_dataset[i] for i in range(2)])
    assert "teacher_prompt_ids" not in batch  # the teacher then scores the student's own prompt
    off.train()
    assert all(math.isfinite(x) for x in losses(off))


def test_positional_arguments_and_sft_config_work_as_in_sft_trainer(tmp_path, plain_dataset):
    tokenizer = build_tokenizer()
    sft_args = SFTConfig(output_dir=str(tmp_path / "out"), **COMMON, max_steps=1, per_device_train_batch_size=4)
    trainer = RAFTTrainer(build_model(tokenizer), sft_args, None, plain_dataset, None, tokenizer,
                          teacher_model=build_model(tokenizer))  # fmt: skip
    assert isinstance(trainer.args, RAFTConfig) and trainer.args.distillation_topk == 512
    assert trainer.args.per_device_train_batch_size == 4 and trainer.args.learning_rate == 1e-3
    trainer.train()
    assert "raft/lambda" in trainer.state.log_history[0]


def test_rows_dropped_for_length_and_cut_references_are_reported(tmp_path, plain_dataset, caplog):
    long_prompt = {"prompt": " ".join(["What is two plus two ?"] * 20), "completion": " four ."}
    long_answer = {"prompt": "What is two plus two ?", "completion": " " + " ".join(["Two plus two is four ."] * 10)}
    dataset = plain_dataset.add_item(long_prompt).add_item(long_answer)
    with caplog.at_level("WARNING"):
        trainer = make_trainer(tmp_path, dataset, max_steps=1, per_device_train_batch_size=4, max_length=40)
    assert len(trainer.train_dataset) == len(plain_dataset) + 1
    assert "1 of 10 rows of the train dataset were dropped" in caplog.text
    assert "1 of 9 references in the train dataset were cut" in caplog.text


def test_non_finite_loss_skips_the_micro_batch_and_keeps_weights_and_lambda_finite(
    tmp_path, plain_dataset, monkeypatch, caplog
):
    monkeypatch.setattr(RAFTTrainer, "_sample_rollouts", fixed_rollouts())
    original, calls = RAFTTrainer._teacher_topk, []

    def nan_on_third_call(self, *args):  # calls: step 1's window pass for λ, steps 1, 2 and 3
        top = original(self, *args)
        calls.append(1)
        if len(calls) == 3:
            top.logprobs = torch.full_like(top.logprobs, float("nan"))
        return top

    monkeypatch.setattr(RAFTTrainer, "_teacher_topk", nan_on_third_call)
    trainer = make_trainer(tmp_path, plain_dataset, max_steps=3, per_device_train_batch_size=4)
    with caplog.at_level("WARNING"):
        trainer.train()
    assert "Step 1: non-finite RAFT loss" in caplog.text
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert trainer.balancer.step == 2 and math.isfinite(trainer.balancer.lam)  # the skipped step left no trace
    assert sum(log.get("raft/skipped_batches", 0) for log in trainer.state.log_history) == 1


def test_rollout_sampling_uses_only_the_configured_settings(tmp_path, plain_dataset):
    trainer = make_trainer(tmp_path, plain_dataset, max_steps=1, per_device_train_batch_size=4, top_k=0, top_p=0.9)
    config = trainer.rollout_generation_config
    assert (config.top_k, config.top_p, config.temperature, config.repetition_penalty) == (0, 0.9, 1.0, 1.0)
    assert (
        config.do_sample and config.max_new_tokens == 6 and trainer.eos_token_ids == [trainer._tokenizer.eos_token_id]
    )
    trainer.train()
    assert trainer.state.log_history[0]["num_tokens"] > 0  # SFTTrainer's token count is still logged


def test_conversational_messages_train_and_evaluate(tmp_path):
    from datasets import Dataset

    rows = [
        [{"role": "system", "content": "The court ."}, {"role": "user", "content": "What is two plus two ?"},
         {"role": "assistant", "content": "Two plus two is four ."}],
        [{"role": "user", "content": "What is the capital of France ?"},
         {"role": "assistant", "content": "The capital of France is Paris ."}],
    ] * 4  # fmt: skip
    dataset = Dataset.from_dict({"messages": rows})
    trainer = make_trainer(tmp_path, dataset, max_steps=2, per_device_train_batch_size=4)
    trainer.eval_dataset = trainer._prepare_dataset(
        normalize_dataset(dataset, "eval"), trainer.processing_class, trainer.args, False, None, "eval"
    )
    sample = trainer.train_dataset[0]
    prompt_len = next(i for i, label in enumerate(sample["labels"]) if label != -100)
    assert trainer._tokenizer.decode(sample["input_ids"][:prompt_len]).endswith("<|assistant|>")
    trainer.train()
    assert all(math.isfinite(x) for x in losses(trainer))
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"]) and "eval_mean_token_accuracy" in metrics  # SFT loss, no rollouts


def test_metrics_reach_tensorboard(tmp_path, plain_dataset, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))  # transformers 5 has no `logging_dir`
    trainer = make_trainer(tmp_path, plain_dataset, max_steps=2, per_device_train_batch_size=4,
                           report_to=["tensorboard"])  # fmt: skip
    trainer.train()
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/raft/lambda", "train/raft/kl_loss", "train/raft/sft_loss", "train/raft/ema_kl"} <= tags
    assert len(events.Scalars("train/raft/lambda")) == 2


def test_teacher_with_another_vocabulary_is_refused(tmp_path, plain_dataset):
    tokenizer = build_tokenizer()
    args = RAFTConfig(output_dir=str(tmp_path / "out"), **COMMON, max_steps=1)
    with pytest.raises(ValueError, match=r"teacher's vocabulary \(100 tokens\) differs"):
        RAFTTrainer(build_model(tokenizer), args=args, train_dataset=plain_dataset, processing_class=tokenizer,
                    teacher_model=build_model(tokenizer, vocab_size=100))  # fmt: skip


def test_a_custom_data_collator_is_wrapped_with_raft_keys(tmp_path, plain_dataset):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tokenizer = build_tokenizer()
    calls = []

    class Recording(DataCollatorForLanguageModeling):
        def __call__(self, examples):
            calls.append(sorted(examples[0]))
            return super().__call__(examples)

    args = RAFTConfig(output_dir=str(tmp_path / "out"), **COMMON, max_steps=2, per_device_train_batch_size=4,
                      max_completion_length=4, distillation_topk=8)  # fmt: skip
    trainer = RAFTTrainer(build_model(tokenizer), args=args, train_dataset=plain_dataset, processing_class=tokenizer,
                          data_collator=Recording(pad_token_id=tokenizer.pad_token_id), teacher_model=build_model(tokenizer))  # fmt: skip
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert {"prompt_input_ids", "teacher_prompt_ids", "input_ids", "labels", "attention_mask"} <= set(batch)
    trainer.train()
    assert calls and all("teacher_prompt_ids" not in keys for keys in calls)  # RAFT's own key is not passed on
    assert all(math.isfinite(x) for x in losses(trainer))


def test_a_collator_without_the_sft_keys_is_refused_with_what_raft_needs(tmp_path, plain_dataset):
    tokenizer = build_tokenizer()
    args = RAFTConfig(output_dir=str(tmp_path / "out"), **COMMON, max_steps=1, per_device_train_batch_size=4)
    trainer = RAFTTrainer(build_model(tokenizer), args=args, train_dataset=plain_dataset, processing_class=tokenizer,
                          data_collator=lambda examples: {"input_ids": torch.tensor([e["input_ids"][:2] for e in examples])},
                          teacher_model=build_model(tokenizer))  # fmt: skip
    with pytest.raises(ValueError, match=r"without \['attention_mask', 'labels'\]\. RAFT needs an SFT batch"):
        trainer.data_collator([trainer.train_dataset[i] for i in range(2)])


def test_teacher_reloaded_from_a_checkpoint_that_the_passed_model_no_longer_matches_is_reported(
    tmp_path, plain_dataset, tiny_model_dir, caplog
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    args = RAFTConfig(output_dir=str(tmp_path / "out"), **COMMON, max_steps=1, per_device_train_batch_size=4)
    with caplog.at_level("WARNING"):
        RAFTTrainer(AutoModelForCausalLM.from_pretrained(tiny_model_dir), args=args, train_dataset=plain_dataset,
                    processing_class=tokenizer)  # fmt: skip
    assert "differs from the checkpoint" not in caplog.text
    changed = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        changed.lm_head.weight.add_(1.0)  # e.g. a model fine-tuned in memory before RAFT
    with caplog.at_level("WARNING"):
        trainer = RAFTTrainer(changed, args=args, train_dataset=plain_dataset, processing_class=tokenizer)
    assert "differs from the checkpoint it was loaded from" in caplog.text and "teacher_model=" in caplog.text
    assert "lm_head.weight: largest difference 1" in caplog.text
    assert not torch.equal(trainer.teacher.lm_head.weight, changed.lm_head.weight)


def test_rollouts_end_at_a_stop_string_which_is_kept_and_counted_as_finished(tmp_path, plain_dataset, monkeypatch):
    tokenizer = build_tokenizer()
    stop_word = tokenizer.convert_tokens_to_ids("Paris")
    other = tokenizer.convert_tokens_to_ids("capital")

    def generate(self, input_ids=None, attention_mask=None, generation_config=None, stopping_criteria=None, **kw):
        rows = [
            [other, other, stop_word, other, other, other] if i % 2 else [other] * 6 for i in range(len(input_ids))
        ]
        completion = torch.tensor(rows)
        full = torch.cat([input_ids, completion], dim=1)
        criteria = stopping_criteria[0]
        assert criteria(full, None).tolist() == [bool(i % 2) for i in range(len(input_ids))]  # StopOnText is used
        return full

    trainer = make_trainer(tmp_path, plain_dataset, max_steps=1, per_device_train_batch_size=4, stop_strings=["Paris"])
    monkeypatch.setattr(type(trainer.model), "generate", generate)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    rollouts = trainer._sample_rollouts(trainer.model, batch["prompt_input_ids"], batch["prompt_attention_mask"])
    assert rollouts.lengths.tolist() == [6, 3, 6, 3]  # "capital capital Paris": the stop token is kept
    assert rollouts.finished.tolist() == [False, True, False, True]
    assert (rollouts.completion_ids[1, 3:] == tokenizer.pad_token_id).all()
    trainer.train()
    log = next(log for log in trainer.state.log_history if "completions/clipped_ratio" in log)
    assert log["completions/clipped_ratio"] == 0.5 and log["completions/mean_length"] == 4.5


def test_default_stop_strings_follow_the_chat_template(tmp_path, plain_dataset):
    with_template = make_trainer(tmp_path, plain_dataset, max_steps=1)
    assert with_template.stop_strings == []
    without = make_trainer(tmp_path, plain_dataset, tokenizer=build_tokenizer(chat_template=False), max_steps=1)
    assert without.stop_strings == ["\n"]
    explicit = make_trainer(tmp_path, plain_dataset, tokenizer=build_tokenizer(chat_template=False), max_steps=1,
                            stop_strings=["\\n\\n"])  # fmt: skip
    assert explicit.stop_strings == ["\n\n"]  # typed escapes become real newlines


def test_answers_that_contain_a_stop_string_are_reported(tmp_path, plain_dataset, caplog):
    with caplog.at_level("WARNING"):
        make_trainer(tmp_path, plain_dataset, max_steps=1, stop_strings=["Paris"])
    assert "2 of 8 training answers contain a rollout stop string ['Paris']" in caplog.text


def test_plain_on_policy_distillation_does_not_start_with_a_huge_lambda(tmp_path, plain_dataset):
    """Student = teacher at step 1 (answer_conditioning=False): the KL is ~0, so λ is 0 there and the EMAs start at
    the first step with a KL (before: λ ≈ 5e7 at step 2 on Gemma and a loss of 4e7)."""
    trainer = make_trainer(tmp_path, plain_dataset, max_steps=3, per_device_train_batch_size=4,
                           answer_conditioning=False, learning_rate=1e-2)  # fmt: skip
    trainer.train()
    assert logged_lambda(trainer, 1) == 0.0
    later = [logged_lambda(trainer, step) for step in (2, 3)]
    assert all(0 < lam < 1e4 for lam in later), later
    assert all(math.isfinite(x) and x < 100 for x in losses(trainer))


def test_every_row_dropped_by_max_length_is_an_error_that_names_the_lengths(tmp_path, plain_dataset):
    with pytest.raises(
        ValueError, match=r"Every one of the 8 rows .* `max_length` \(4\).* prompts are \d+–\d+ tokens"
    ):
        make_trainer(tmp_path, plain_dataset, max_steps=1, max_length=4)


def test_a_budget_that_leaves_no_reference_token_is_an_error(tmp_path, plain_dataset):
    with pytest.raises(ValueError, match="left no token of any reference"):
        make_trainer(tmp_path, plain_dataset, max_steps=1, max_teacher_prompt_length=5)


def test_model_card_names_a_local_base_model_and_cites_the_paper(tmp_path, tiny_model_dir, plain_dataset):
    args = RAFTConfig(output_dir=str(tmp_path / "out"), **{**COMMON, "max_completion_length": 4})
    trainer = RAFTTrainer(tiny_model_dir, args=args, train_dataset=plain_dataset)
    trainer.create_model_card(model_name="out")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "huggingface.co/None" not in card and "[None]" not in card
    assert f"the local model `{os.path.basename(tiny_model_dir)}`" in card
    assert "arXiv:2606.00147" in card and "RAFT: Data Refinement and Adaptive Distillation" in card
    assert "## RAFT settings" in card and "| `distillation_topk` | `512` |" in card and 'model="None"' not in card
