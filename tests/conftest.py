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


SUBWORD_CORPUS = [
    "Question: What is the capital of France?\nAnswer: The capital of France is Paris.",
    "Question: Which gas do plants absorb?\nAnswer: Plants absorb carbon dioxide from the air.",
    "Background reference knowledge: Plan the contract. The court ruled that the contract was void.",
    "Answer the question based on the reference knowledge: Who wrote the contract law? Two plus two is four.",
    "system user model assistant tools: get_weather, search. Be brief; answer with one word (yes or no).",
    "0 1 2 3 4 5 6 7 8 9 , . ; : ? ! ' \" ( ) [ ] { } - _ / a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z",
]
GEMMA_LIKE_CHAT_TEMPLATE = (
    "{{ bos_token }}{% if tools %}<start_of_turn>system\ntools: {{ tools | map(attribute='name') | join(', ') }}"
    "<end_of_turn>\n{% endif %}{% if brief is defined and brief %}<start_of_turn>system\nBe brief.<end_of_turn>\n"
    "{% endif %}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def build_subword_tokenizer(kind: str = "byte_level", chat_template: str | None = None):
    """A BPE tokenizer trained here: `"byte_level"` (GPT-2 style, `Ġ` marks a leading space) or `"metaspace"`
    (SentencePiece style, `▁` marks a space and every separate call gets a leading `▁`, as Llama 2's tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "<bos>", "<eos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    if kind == "byte_level":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    elif kind == "metaspace":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        alphabet = []
    else:
        raise ValueError(kind)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=special, initial_alphabet=alphabet)
    tok.train_from_iterator(SUBWORD_CORPUS * 10, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def build_model(tokenizer, seed: int = 0, **overrides):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    overrides.setdefault("vocab_size", len(tokenizer))
    # Room for a prompt and RAFTConfig's default 256-token rollout (rows past the context are refused at init);
    # RoPE has no weights, so the context changes no number.
    overrides.setdefault("max_position_embeddings", 2048)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
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
