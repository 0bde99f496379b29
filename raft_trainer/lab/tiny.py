"""A small random causal LM with a byte-level BPE tokenizer trained on the lab's own texts, built in seconds and
saved like any checkpoint: what `raft lab --preset smoke` (and CI) runs every method on. Its numbers mean nothing."""

from __future__ import annotations

from pathlib import Path


def build_tiny_model(path: str | Path, seed: int = 0) -> str:
    """Build (once) and save the tiny model + tokenizer under `path`; returns the path."""
    path = Path(path)
    if (path / "config.json").exists():
        return str(path)
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from ..data import read_jsonl
    from ..eval.probes import bundled
    from .domains import GENERAL_PROBES, SHIPPED

    texts = [
        r["question"] + " " + r["answer"]
        for d in SHIPPED.values()
        for f in (d.train_file, d.test_file)
        for r in read_jsonl(f)
    ]
    texts += [p["question"] + " " + p["answer"] for p in read_jsonl(GENERAL_PROBES)]
    texts += [p["prompt"] for p in read_jsonl(bundled("ifeval_prompts.jsonl"))]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special = ["<pad>", "<bos>", "<eos>"]
    tokenizer.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=1024, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    fast.save_pretrained(path)
    return str(path)
