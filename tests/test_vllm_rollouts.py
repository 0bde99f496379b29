"""vLLM rollouts: a clear error without vLLM, and the glue to TRL's `VLLMGeneration` (a recording stand-in: vLLM
needs a GPU): one weight sync per optimizer step, unpadded prompts repeated per generation, completions as rollouts."""

import pytest
from trl.import_utils import is_vllm_available

from raft_trainer import RAFTConfig, RAFTTrainer


def small_args(tmp_path, **overrides):
    return RAFTConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, bf16=False,
                      gradient_accumulation_steps=2, max_completion_length=4, report_to=[], logging_steps=1,
                      save_strategy="no", use_vllm=True, **overrides)  # fmt: skip


@pytest.mark.skipif(is_vllm_available(), reason="vLLM is installed here")
def test_use_vllm_without_vllm_names_the_extra(tmp_path, tiny_model_dir, plain_dataset):
    with pytest.raises(ImportError, match=r"raft_trainer\[vllm\]"):
        RAFTTrainer(tiny_model_dir, args=small_args(tmp_path), train_dataset=plain_dataset)


class RecordingEngine:
    """Stands in for TRL's VLLMGeneration: records calls, answers each prompt with two tokens and an EOS."""

    instances = []

    def __init__(self, **kwargs):
        self.kwargs, self.syncs, self.prompts = kwargs, 0, []
        RecordingEngine.instances.append(self)

    def sync_weights(self):
        self.syncs += 1

    def generate(self, prompts, images, num_generations):
        self.prompts.append(prompts)
        eos = self.kwargs["processing_class"].eos_token_id
        completions = [[prompt[-1], prompt[-1], eos] for prompt in prompts]
        return prompts, completions, None, None


def test_vllm_rollouts_sync_once_per_step_and_feed_the_loss(tmp_path, tiny_model_dir, plain_dataset, monkeypatch):
    import trl.generation.vllm_generation as vllm_generation

    monkeypatch.setattr("raft_trainer.vllm_rollouts.is_vllm_available", lambda: True)
    monkeypatch.setattr(vllm_generation, "VLLMGeneration", RecordingEngine)
    trainer = RAFTTrainer(tiny_model_dir, args=small_args(tmp_path, num_generations=2, temperature=0.7),
                          train_dataset=plain_dataset)  # fmt: skip
    trainer.train()
    engine = RecordingEngine.instances[-1]
    assert engine.kwargs["mode"] == "colocate" and engine.kwargs["temperature"] == 0.7
    assert engine.kwargs["logprobs"] is None and engine.kwargs["max_completion_length"] == 4
    assert engine.syncs == 2  # two optimizer steps of two micro-batches each
    assert len(engine.prompts) == 4
    pad = trainer.processing_class.pad_token_id
    for prompts in engine.prompts:
        assert len(prompts) == 4 and prompts[0] == prompts[1] and prompts[2] == prompts[3]  # 2 per prompt, in order
        assert all(prompt[0] != pad for prompt in prompts)  # left padding removed
    logs = [log for log in trainer.state.log_history if "completions/mean_length" in log]
    assert [log["completions/mean_length"] for log in logs] == [3.0, 3.0]
    assert all(log["raft/kl_loss"] > 0 for log in logs)


def test_vllm_rollouts_stop_at_the_configured_strings(tmp_path, tiny_model_dir, plain_dataset, monkeypatch):
    import trl.generation.vllm_generation as vllm_generation

    monkeypatch.setattr("raft_trainer.vllm_rollouts.is_vllm_available", lambda: True)
    monkeypatch.setattr(vllm_generation, "VLLMGeneration", RecordingEngine)
    trainer = RAFTTrainer(tiny_model_dir, args=small_args(tmp_path, stop_strings=["Paris"]),
                          train_dataset=plain_dataset)  # fmt: skip
    engine = RecordingEngine.instances[-1]
    assert engine.kwargs["generation_kwargs"] == {"stop": ["Paris"], "include_stop_str_in_output": True}
    paris, other = trainer._tokenizer.convert_tokens_to_ids(["Paris", "capital"])
    engine.generate = lambda prompts, images, num_generations: (
        prompts,
        [[other, paris, other]] * len(prompts),
        None,
        None,
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    rollouts = trainer._sample_rollouts(trainer.model, batch["prompt_input_ids"], batch["prompt_attention_mask"])
    assert rollouts.lengths.tolist() == [2, 2] and rollouts.finished.tolist() == [True, True]
