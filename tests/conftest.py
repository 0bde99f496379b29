"""Shared fixtures: a tiny Llama-style model and a word-level tokenizer built on local text (no downloads)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CORPUS = [
    "What is the capital of France ?",
    "The capital of France is Paris .",
    "What is two plus two ?",
    "Two plus two is four .",
    "Which gas do plants absorb ?",
    "Plants absorb carbon dioxide from the air .",
    "Who wrote the contract law ?",
    "The court ruled that the contract was void .",
    "Background reference knowledge : Answer the question based on the reference knowledge : Answer :",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(chat_template: bool = True):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(CORPUS * 3, trainers.WordLevelTrainer(special_tokens=special))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(tokenizer, seed: int = 0, **overrides):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    overrides.setdefault("vocab_size", len(tokenizer))
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **overrides,
    )
    return LlamaForCausalLM(config)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny model + tokenizer folder, loadable with `from_pretrained(path)`."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def plain_dataset():
    from datasets import Dataset

    rows = [
        ("What is the capital of France ?", "The capital of France is Paris ."),
        ("What is two plus two ?", "Two plus two is four ."),
        ("Which gas do plants absorb ?", "Plants absorb carbon dioxide from the air ."),
        ("Who wrote the contract law ?", "The court ruled that the contract was void ."),
    ] * 2
    return Dataset.from_dict({"prompt": [p for p, _ in rows], "completion": [" " + c for _, c in rows]})


@pytest.fixture(scope="session")
def served_model(tiny_model_dir, tmp_path_factory):
    """`transformers serve` on 127.0.0.1 with the tiny model, stopped (process group) at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    executable = os.path.join(os.path.dirname(sys.executable), "transformers")
    command = [executable, "serve", tiny_model_dir, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
               "--dtype", "float32", "--no-continuous-batching"]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"transformers serve exited:\n{log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                if time.time() > deadline:
                    raise TimeoutError(f"transformers serve not ready:\n{log.read_text()[-2000:]}") from None
                time.sleep(0.3)
        yield f"{tiny_model_dir}@{url}/v1"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
