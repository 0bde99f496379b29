"""Rollouts from vLLM (optional): TRL's `VLLMGeneration` engine, colocated with training or a `trl vllm-serve` server,
with the student's weights pushed to it once per optimizer step (merged LoRA, ZeRO-3 gathered: TRL handles both).

Supported: what TRL 1.16's vLLM extra allows, vLLM ≥ 0.22 and ≤ 0.31 (`pip install "raft_trainer[vllm]"`), on GPUs.
"""

from __future__ import annotations

import torch
from trl.import_utils import is_vllm_available

from .errors import MissingPackageError
from .rollouts import Rollouts, end_at_stop_strings, rollouts_from_token_lists

VLLM_RANGE = "vllm>=0.22.0,<=0.31.0"


class VLLMRollouts:
    """Sample RAFT's on-policy rollouts with vLLM instead of `model.generate`.

    Every rank calls [`sample`] with the same number of prompts (vLLM's gathers are collective). The engine gets the
    current weights before the first rollout of each optimizer step, so rollouts are on-policy up to that step, like
    TRL's GRPO and distillation trainers.

    Args:
        trainer (`RAFTTrainer`): its model, accelerator, tokenizer and the `vllm_*` / rollout fields of its args.
    """

    def __init__(self, trainer):
        if not is_vllm_available():
            raise MissingPackageError(
                f"`use_vllm=True` needs vLLM ({VLLM_RANGE}, the range TRL supports) on a GPU machine: "
                "pip install 'raft_trainer[vllm]'. Set `use_vllm=False` to sample with `model.generate`."
            )
        from trl.generation.vllm_generation import VLLMGeneration

        args = trainer.args
        self.num_generations = args.num_generations
        self.tokenizer, self.stop_strings = trainer._tokenizer, trainer.stop_strings
        # vLLM stops at the strings itself; the same cut as for `generate` is applied afterwards (`sample`).
        stop = {"stop": list(self.stop_strings), "include_stop_str_in_output": True} if self.stop_strings else None
        self.engine = VLLMGeneration(
            model=trainer.model,
            accelerator=trainer.accelerator,
            processing_class=trainer.processing_class,
            mode=args.vllm_mode,
            server_base_url=args.vllm_server_base_url,
            server_host=args.vllm_server_host,
            server_port=args.vllm_server_port,
            server_timeout=args.vllm_server_timeout,
            tensor_parallel_size=args.vllm_tensor_parallel_size,
            gpu_memory_utilization=args.vllm_gpu_memory_utilization,
            max_model_length=args.vllm_max_model_length,
            max_num_seqs=args.per_device_train_batch_size * args.num_generations * args.vllm_tensor_parallel_size,
            enable_sleep_mode=args.vllm_enable_sleep_mode,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            max_completion_length=args.max_completion_length,
            logprobs=None,
            generation_kwargs=stop,
        )
        self.synced_step = -1

    def sample(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        *,
        global_step: int,
        eos_token_ids: list[int],
        pad_token_id: int,
    ) -> Rollouts:
        """`num_generations` rollouts per left-padded prompt, consecutive, as `Rollouts` on the prompts' device."""
        if global_step != self.synced_step:
            self.engine.sync_weights()
            self.synced_step = global_step
        prompts = [ids[mask.bool()].tolist() for ids, mask in zip(prompt_ids, prompt_mask)]
        repeated = [prompt for prompt in prompts for _ in range(self.num_generations)]
        _, completions, _, _ = self.engine.generate(
            prompts=repeated, images=None, num_generations=self.num_generations
        )
        rollouts = rollouts_from_token_lists(
            completions, eos_token_ids=eos_token_ids, pad_token_id=pad_token_id, device=prompt_ids.device
        )
        return end_at_stop_strings(rollouts, self.tokenizer, self.stop_strings, pad_token_id)
