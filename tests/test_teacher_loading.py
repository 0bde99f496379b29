"""Issue 21: the reloaded teacher is loaded as the student was, grows as the student's vocabulary grew, and its rows
fit the model's context. Every test goes through the path a user takes: `RAFTTrainer("path/to/folder", ...)` on a
tiny model saved to a folder, or `raft train --model_name_or_path folder` as a subprocess."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from datasets import Dataset

from raft_trainer import RAFTConfig, RAFTTrainer
from raft_trainer.errors import ConfigError

from conftest import GEMMA_LIKE_CHAT_TEMPLATE, build_model, build_subword_tokenizer, build_tokenizer

COMMON = dict(report_to=[], save_strategy="no", use_cpu=True, seed=0, logging_steps=1, bf16=False,
              per_device_train_batch_size=2, max_completion_length=4, distillation_topk=8)  # fmt: skip

# ---- (a) the teacher is loaded with the student's loading options ---------------------------------------------------


@pytest.fixture(scope="module")
def remote_code_model_dir(tmp_path_factory):
    """A tiny Llama whose config, model and tokenizer classes are custom code in the folder (`auto_map`): loading
    any of them needs `trust_remote_code=True`, else transformers asks `[y/N]` (or fails without a terminal)."""
    path = tmp_path_factory.mktemp("remote-code-llama")
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "configuration_tiny.py").write_text(
        "from transformers import LlamaConfig\n\n\nclass TinyConfig(LlamaConfig):\n    model_type = 'tiny-remote'\n"
    )
    (path / "modeling_tiny.py").write_text(
        "from transformers import LlamaForCausalLM\n\nfrom .configuration_tiny import TinyConfig\n\n\n"
        "class TinyForCausalLM(LlamaForCausalLM):\n    config_class = TinyConfig\n"
    )
    (path / "tokenization_tiny.py").write_text(
        "from transformers import PreTrainedTokenizerFast\n\n\nclass TinyTokenizerFast(PreTrainedTokenizerFast):\n"
        "    pass\n"
    )
    config = json.loads((path / "config.json").read_text())
    config.update(model_type="tiny-remote", architectures=["TinyForCausalLM"],
                  auto_map={"AutoConfig": "configuration_tiny.TinyConfig",
                            "AutoModelForCausalLM": "modeling_tiny.TinyForCausalLM"})  # fmt: skip
    (path / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((path / "tokenizer_config.json").read_text())
    tokenizer_config.update(
        tokenizer_class="TinyTokenizerFast", auto_map={"AutoTokenizer": [None, "tokenization_tiny.TinyTokenizerFast"]}
    )
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return str(path)


@pytest.mark.parametrize(
    "options",
    [{"model_init_kwargs": {"trust_remote_code": True}}, {"trust_remote_code": True}],
    ids=["model_init_kwargs", "trust_remote_code"],
)
def test_the_reloaded_teacher_gets_the_students_trust_remote_code(tmp_path, remote_code_model_dir, plain_dataset,
                                                                    options):  # fmt: skip
    from transformers import AutoTokenizer

    args = RAFTConfig(output_dir=str(tmp_path / "out"), **COMMON, max_steps=1, **options)
    # TRL loads the tokenizer with `args.trust_remote_code` only, so with `model_init_kwargs` alone it is passed in.
    tokenizer = None if args.trust_remote_code else AutoTokenizer.from_pretrained(remote_code_model_dir,
                                                                                trust_remote_code=True)  # fmt: skip
    trainer = RAFTTrainer(remote_code_model_dir, args=args, train_dataset=plain_dataset, processing_class=tokenizer)
    assert type(trainer.teacher).__name__ == type(trainer.model).__name__ == "TinyForCausalLM"
    trainer.train()


def test_teacher_model_init_kwargs_win_key_by_key_over_the_students(tmp_path, remote_code_model_dir, plain_dataset):
    args = RAFTConfig(
        output_dir=str(tmp_path / "out"), **COMMON, trust_remote_code=True,
        model_init_kwargs={"attn_implementation": "eager", "dtype": "bfloat16"},
        teacher_model_init_kwargs={"attn_implementation": "sdpa"},
    )  # fmt: skip
    trainer = RAFTTrainer(remote_code_model_dir, args=args, train_dataset=plain_dataset)
    student, teacher = trainer.model, trainer.teacher
    assert type(teacher).__name__ == "TinyForCausalLM"  # trust_remote_code: the student's
    assert teacher.dtype == student.dtype == torch.bfloat16  # dtype: the student's
    assert student.config._attn_implementation == "eager" and teacher.config._attn_implementation == "sdpa"
    args.teacher_model_init_kwargs = {"dtype": "float32"}
    assert RAFTTrainer(remote_code_model_dir, args=args, train_dataset=plain_dataset).teacher.dtype == torch.float32


def test_a_failed_teacher_load_names_teacher_model_init_kwargs(tmp_path, remote_code_model_dir, plain_dataset):
    args = RAFTConfig(output_dir=str(tmp_path / "out"), **COMMON, trust_remote_code=True,
                      teacher_model_init_kwargs={"trust_remote_code": False})  # fmt: skip
    with pytest.raises(
        ConfigError,
        match=r"(?s)loaded again from .*'trust_remote_code': False.*loading options in `teacher_model_init_kwargs`",
    ):
        RAFTTrainer(remote_code_model_dir, args=args, train_dataset=plain_dataset)
    args.teacher_model_init_kwargs = None
    with pytest.raises(
        ConfigError, match=r"(?s)The teacher '/no/such/folder' could not be loaded .*in `teacher_model_init_kwargs`"
    ):
        RAFTTrainer(remote_code_model_dir, args=args, train_dataset=plain_dataset, teacher_model="/no/such/folder")


def test_raft_train_trust_remote_code_never_prompts(tmp_path, remote_code_model_dir):
    """Question/answer rows (their prompt format reads the tokenizer), a remote-code model, config and tokenizer:
    `--trust_remote_code` reaches the student, the teacher and the tokenizer, so transformers never asks."""
    data = tmp_path / "qa.jsonl"
    rows = [("What is two plus two ?", "Two plus two is four ."), ("Which gas do plants absorb ?", "Plants absorb .")]
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    command = [sys.executable, "-m", "raft_trainer.cli.main", "train", "--model_name_or_path", remote_code_model_dir,
               "--trust_remote_code", "--dataset_name", str(data), "--output_dir", str(tmp_path / "out"),
               "--max_steps", "1", "--per_device_train_batch_size", "2", "--max_completion_length", "4",
               "--distillation_topk", "8", "--report_to", "none", "--save_strategy", "no", "--use_cpu", "true"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600, env=env)
    output = out.stdout + out.stderr
    assert "[y/N]" not in output and "trust_remote_code" not in output, output[-3000:]
    assert out.returncode == 0 and "RAFT training done: 1 steps" in output, output[-3000:]


# ---- (b) `chat_template_path` with full fine-tuning ------------------------------------------------------------------


@pytest.fixture
def template_source_dir(tmp_path):
    """A tokenizer folder whose chat template uses tokens the tiny model's tokenizer lacks (`<start_of_turn>`,
    `<end_of_turn>`, `<eos>`, ...): TRL's `clone_chat_template` adds them and grows the embeddings to a multiple of 64."""
    path = tmp_path / "template-source"
    build_subword_tokenizer("byte_level", GEMMA_LIKE_CHAT_TEMPLATE).save_pretrained(path)
    return str(path)


def conversational_dataset():
    rows = [("What is two plus two ?", "Two plus two is four ."),
            ("What is the capital of France ?", "The capital of France is Paris .")] * 2  # fmt: skip
    return Dataset.from_dict({
        "prompt": [[{"role": "user", "content": q}] for q, _ in rows],
        "completion": [[{"role": "assistant", "content": a}] for _, a in rows],
    })  # fmt: skip


def test_chat_template_path_with_full_fine_tuning_grows_the_reloaded_teacher(
    tmp_path, tiny_model_dir, template_source_dir
):
    from transformers import AutoModelForCausalLM

    from raft_trainer.teacher import teacher_topk_over_completions

    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    old = original.config.vocab_size
    args = RAFTConfig(output_dir=str(tmp_path / "out"), **COMMON, max_steps=1, chat_template_path=template_source_dir)
    trainer = RAFTTrainer(tiny_model_dir, args=args, train_dataset=conversational_dataset())
    student, teacher = trainer.model, trainer.teacher
    new = student.get_input_embeddings().weight.shape[0]
    assert new > old and new % 64 == 0  # grown by clone_chat_template
    assert teacher.get_input_embeddings().weight.shape[0] == new and teacher.config.vocab_size == new
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    # The teacher is the original model on the old rows and the student as it starts on the new ones.
    torch.testing.assert_close(teacher.get_input_embeddings().weight[:old], original.get_input_embeddings().weight)
    torch.testing.assert_close(
        teacher.get_input_embeddings().weight[old:], student.get_input_embeddings().weight[old:]
    )
    torch.testing.assert_close(teacher.lm_head.weight[:old], original.lm_head.weight)
    assert "<end_of_turn>" in trainer._tokenizer.decode(trainer.train_dataset[0]["teacher_prompt_ids"])

    # The new rows never enter the teacher's top-K: with K = the old vocabulary, every id in it is an old one.
    ids = trainer._tokenizer("The court ruled that the contract was void .", return_tensors="pt")["input_ids"]
    mask = torch.ones_like(ids)
    positions = torch.arange(ids.size(1))[None]
    top = teacher_topk_over_completions(student, teacher, ids, mask, positions, ids.size(1) - 1, k=old,
                                        temperature=1.5, chunk_size=256)  # fmt: skip
    assert int(top.indices.max()) < old and torch.isfinite(top.logprobs).all()
    everything = teacher_topk_over_completions(student, teacher, ids, mask, positions, ids.size(1) - 1, k=new,
                                               temperature=1.5, chunk_size=256)  # fmt: skip
    assert (everything.logprobs[everything.indices >= old] == float("-inf")).all()

    trainer.train()
    logged = [log for log in trainer.state.log_history if "raft/kl_loss" in log]
    assert logged and math.isfinite(logged[0]["raft/kl_loss"]) and math.isfinite(logged[0]["loss"])


def test_chat_template_path_with_a_teacher_that_lacks_the_new_tokens_is_refused_by_name(
    tmp_path, tiny_model_dir, template_source_dir
):
    args = RAFTConfig(output_dir=str(tmp_path / "out"), **COMMON, max_steps=1, chat_template_path=template_source_dir)
    with pytest.raises(ConfigError, match=r"vocabulary .* differs .*`chat_template_path`.* LoRA"):
        RAFTTrainer(tiny_model_dir, args=args, train_dataset=conversational_dataset(), teacher_model=tiny_model_dir)


# ---- (h) the teacher's rows fit the model's context ----------------------------------------------------------------


@pytest.fixture(scope="module")
def short_context_model_dir(tmp_path_factory):
    """A tiny GPT-2 (learned positions: a row past its 64 positions fails with `IndexError`)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


LONG_ANSWERS = Dataset.from_dict(
    {"prompt": ["What is the capital of France ?"] * 4, "completion": [" The capital of France is Paris ." * 8] * 4}
)


@pytest.mark.parametrize(
    "lengths, numbers",
    [({"max_length": 60}, r"up to 60 prompt tokens \+ `max_completion_length` \(8\) = 68 tokens"),
     ({"max_length": None}, r"up to \d+ prompt tokens \+ `max_completion_length` \(8\) = \d+ tokens"),
     ({"max_length": 60, "max_teacher_prompt_length": 200}, r"= \d+ tokens")],
    ids=["max_length", "no_max_length", "raised_teacher_budget"],
)  # fmt: skip
def test_teacher_rows_longer_than_the_context_are_refused_at_init_with_the_numbers(
    tmp_path, short_context_model_dir, lengths, numbers
):
    args = RAFTConfig(output_dir=str(tmp_path / "out"), **{**COMMON, "max_completion_length": 8}, max_steps=1,
                      **lengths)  # fmt: skip
    with pytest.raises(ConfigError, match=numbers + r", more than the teacher model's context of 64 positions .*"
                                          r"set `max_teacher_prompt_length` to at most 56"):  # fmt: skip
        RAFTTrainer(short_context_model_dir, args=args, train_dataset=LONG_ANSWERS)
    # The advice works: the references are cut to fit and a step trains.
    args.max_teacher_prompt_length = 56
    args.max_length = 60
    trainer = RAFTTrainer(short_context_model_dir, args=args, train_dataset=LONG_ANSWERS)
    assert max(map(len, trainer.train_dataset["teacher_prompt_ids"])) + 8 <= 64
    trainer.train()
    assert all(math.isfinite(log["loss"]) for log in trainer.state.log_history if "loss" in log)
