"""The teacher scores the rollout after exactly the tokens the student sampled it after.

Every test that trains records the rows the trainer really builds (the teacher's input and the student's rollout rows)
and compares token ids: z's ids, and the last tokens before z, must be identical in both rows.
"""

import functools

import pytest
from datasets import Dataset

from raft_trainer import RAFTConfig, RAFTTrainer
from raft_trainer.teacher_prompts import (
    DEFAULT_TEACHER_TEMPLATE,
    boundary_problem,
    build_teacher_prompt,
    validate_teacher_template,
)

from conftest import GEMMA_LIKE_CHAT_TEMPLATE, build_model, build_subword_tokenizer, build_tokenizer

QA = [
    ("Which gas do plants absorb?", "Plants absorb carbon dioxide from the air."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Who wrote the contract law?", "The court ruled that the contract was void."),
    ("What is two plus two?", "Two plus two is four."),
]
# Qwen3-like: the generation prompt opens a block that the rendered conversation does not have, so TRL keeps a
# shorter prompt for the student than `add_generation_prompt=True` renders.
THINKING_CHAT_TEMPLATE = GEMMA_LIKE_CHAT_TEMPLATE.replace(
    "{% if add_generation_prompt %}<start_of_turn>model\\n",
    "{% if add_generation_prompt %}<start_of_turn>model\\n(thinking) ",
)


def plain_rows():
    return {"prompt": [f"Question: {q}\nAnswer:" for q, _ in QA], "completion": [f" {a}" for _, a in QA]}


def conversational_rows():
    return {
        "prompt": [[{"role": "user", "content": q}] for q, _ in QA],
        "completion": [[{"role": "assistant", "content": a}] for _, a in QA],
    }


def messages_rows():
    return {
        "messages": [
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q},
             {"role": "assistant", "content": a}]
            for q, a in QA
        ]
    }  # fmt: skip


def record_forward(module, store):
    """Record `(input_ids, attention_mask)` of every hidden-states forward of `module` (the calls that score rollouts)."""
    original = module.forward

    @functools.wraps(original)
    def forward(*args, **kwargs):
        if kwargs.get("return_last_hidden_state"):
            store.append((kwargs["input_ids"].clone(), kwargs["attention_mask"].clone()))
        return original(*args, **kwargs)

    module.forward = forward


def train_one_step_and_record(tmp_path, tokenizer, rows, **config):
    """One real RAFT step (sampled rollouts); returns `(trainer, rollouts, teacher rows, student rollout rows)`, each
    row as the list of its real (unpadded) token ids."""
    args = RAFTConfig(
        output_dir=str(tmp_path / "out"), report_to=[], save_strategy="no", use_cpu=True, bf16=False, seed=0,
        max_steps=1, per_device_train_batch_size=4, max_completion_length=5, distillation_topk=8,
        **config,
    )  # fmt: skip
    trainer = RAFTTrainer(
        build_model(tokenizer), args=args, train_dataset=Dataset.from_dict(rows), processing_class=tokenizer,
        teacher_model=build_model(tokenizer),
    )  # fmt: skip
    teacher_calls, student_calls, rollouts = [], [], []
    record_forward(trainer.teacher, teacher_calls)
    record_forward(trainer.model, student_calls)
    sample = trainer._sample_rollouts

    def recording_sample(*args, **kwargs):
        rollouts.append(sample(*args, **kwargs))
        return rollouts[-1]

    trainer._sample_rollouts = recording_sample
    trainer.train()
    (teacher_ids, teacher_mask), (student_ids, student_mask) = teacher_calls[0], student_calls[0]
    num_rollouts = rollouts[0].completion_ids.size(0)
    student_ids, student_mask = student_ids[-num_rollouts:], student_mask[-num_rollouts:]  # after the SFT rows
    teacher_rows = [ids[mask.bool()].tolist() for ids, mask in zip(teacher_ids, teacher_mask)]
    student_rows = [ids[mask.bool()].tolist() for ids, mask in zip(student_ids, student_mask)]
    return trainer, rollouts[0], teacher_rows, student_rows


FAMILIES = {
    "byte_level": lambda: build_subword_tokenizer("byte_level"),
    "metaspace": lambda: build_subword_tokenizer("metaspace"),
    "byte_level+chat": lambda: build_subword_tokenizer("byte_level", GEMMA_LIKE_CHAT_TEMPLATE),
    "metaspace+chat": lambda: build_subword_tokenizer("metaspace", GEMMA_LIKE_CHAT_TEMPLATE),
}
CASES = [
    ("byte_level", plain_rows), ("metaspace", plain_rows), ("byte_level+chat", plain_rows),
    ("byte_level+chat", conversational_rows), ("metaspace+chat", conversational_rows),
    ("byte_level+chat", messages_rows), ("metaspace+chat", messages_rows),
]  # fmt: skip


@pytest.mark.parametrize(("family", "rows"), CASES, ids=[f"{f}-{r.__name__}" for f, r in CASES])
def test_teacher_row_ends_like_the_student_row(tmp_path, family, rows):
    tokenizer = FAMILIES[family]()
    trainer, rollouts, teacher_rows, student_rows = train_one_step_and_record(tmp_path, tokenizer, rows())
    assert len(teacher_rows) == len(student_rows) == 4
    for r, (teacher, student) in enumerate(zip(teacher_rows, student_rows)):
        z = rollouts.completion_ids[r][rollouts.completion_mask[r].bool()].tolist()
        assert z and teacher[-len(z) :] == z and student[-len(z) :] == z  # z's ids identical in both rows
        before_teacher, before_student = teacher[: -len(z)], student[: -len(z)]
        assert before_teacher[-3:] == before_student[-3:], (tokenizer.decode(before_teacher[-3:]),
                                                            tokenizer.decode(before_student[-3:]))  # fmt: skip
        assert tokenizer.decode(before_teacher[-3:]) == tokenizer.decode(before_student[-3:])
        # The whole question and what follows it are the student's; the reference is in the teacher's row only.
        question, answer = next((q, a) for q, a in QA if q in tokenizer.decode(before_student))
        assert question in tokenizer.decode(before_teacher) and answer in tokenizer.decode(before_teacher)
        assert answer not in tokenizer.decode(before_student)
    assert not any(trainer.train_dataset["teacher_boundary_problem"])


def test_default_template_gives_no_lone_space_and_no_repeated_cue():
    """The regression: a template ending in "Answer: " before a space-carrying first token, and "Answer:\\nAnswer:"."""
    tokenizer = build_subword_tokenizer("byte_level")
    prompt, reference = "Question: Which gas do plants absorb?\nAnswer:", " Plants absorb carbon dioxide."
    student = tokenizer(prompt)["input_ids"]
    teacher = build_teacher_prompt(tokenizer, student, prompt, reference).ids
    text = tokenizer.decode(teacher, skip_special_tokens=True)
    assert text == (
        "Background reference knowledge: Plants absorb carbon dioxide.\n"
        "Answer the question based on the reference knowledge: Question: Which gas do plants absorb?\nAnswer:"
    )
    assert teacher[-len(student) + 2 :] == student[2:]  # after the junction, the student's own ids
    tokens = tokenizer.convert_ids_to_tokens(teacher)
    reference_ids = tokenizer(" Plants absorb carbon dioxide.", add_special_tokens=False)["input_ids"]
    assert any(
        teacher[i : i + len(reference_ids)] == reference_ids for i in range(len(teacher))
    )  # 'ĠP…', not 'Ġ' 'P…'
    assert "Ġ" not in tokens[tokens.index(":") : tokens.index(":") + 2]  # no lone space token after "knowledge:"
    assert boundary_problem(tokenizer, teacher, student) is None


def test_per_example_tools_and_chat_template_kwargs_reach_the_teacher(tmp_path):
    tokenizer = build_subword_tokenizer("byte_level", GEMMA_LIKE_CHAT_TEMPLATE)
    rows = conversational_rows()
    rows["tools"] = [[{"name": "search"}]] * 4
    rows["chat_template_kwargs"] = [{"brief": True}, {"brief": False}] * 2
    trainer, rollouts, teacher_rows, student_rows = train_one_step_and_record(tmp_path, tokenizer, rows)
    for teacher, student in zip(teacher_rows, student_rows):
        assert "tools: search" in tokenizer.decode(teacher) and "tools: search" in tokenizer.decode(student)
    briefed = [
        ("Be brief." in tokenizer.decode(t), "Be brief." in tokenizer.decode(s))
        for t, s in zip(teacher_rows, student_rows)
    ]
    assert sorted(briefed) == [(False, False), (False, False), (True, True), (True, True)]  # the rows that ask for it
    for r, (teacher, student) in enumerate(zip(teacher_rows, student_rows)):
        n = int(rollouts.completion_mask[r].sum())
        assert teacher[-n - 4 :] == student[-n - 4 :]


def test_generation_prompt_that_differs_from_the_rendered_turn(tmp_path):
    """TRL keeps the common prefix of prompt and prompt+completion for the student; the teacher ends the same way."""
    tokenizer = build_subword_tokenizer("byte_level", THINKING_CHAT_TEMPLATE)
    trainer, rollouts, teacher_rows, student_rows = train_one_step_and_record(tmp_path, tokenizer, messages_rows())
    for r, (teacher, student) in enumerate(zip(teacher_rows, student_rows)):
        n = int(rollouts.completion_mask[r].sum())
        assert not tokenizer.decode(student[:-n]).endswith("(thinking) ")
        assert teacher[-n - 4 :] == student[-n - 4 :]


def test_text_after_the_prompt_placeholder_is_reported_for_plain_data(tmp_path, caplog):
    tokenizer = build_subword_tokenizer("byte_level")
    template = "Reference: {reference}\n{prompt}\nAnswer: "
    with caplog.at_level("WARNING"):
        train_one_step_and_record(tmp_path, tokenizer, plain_rows(), teacher_template=template)
    assert "4 of 4 teacher prompts of the train dataset end differently from the student's prompt" in caplog.text
    assert "ends with '?\\nAnswer:\\nAnswer: ' but the student prompt with ' absorb?\\nAnswer:'" in caplog.text


def test_text_after_the_prompt_placeholder_stays_inside_the_user_turn_for_chat(tmp_path, caplog):
    tokenizer = build_subword_tokenizer("byte_level", GEMMA_LIKE_CHAT_TEMPLATE)
    with caplog.at_level("WARNING"):
        trainer, rollouts, teacher_rows, student_rows = train_one_step_and_record(
            tmp_path, tokenizer, conversational_rows(), teacher_template="Reference: {reference}\n{prompt}\nAnswer: "
        )
    assert "end differently" not in caplog.text
    assert "absorb?\nAnswer: <end_of_turn>\n<start_of_turn>model\n" in tokenizer.decode(
        trainer.train_dataset[0]["teacher_prompt_ids"]
    )


@pytest.mark.parametrize("family", ["byte_level", "metaspace", "word_level"])
def test_budget_cuts_the_reference_never_the_question(family):
    tokenizer = build_tokenizer(chat_template=False) if family == "word_level" else build_subword_tokenizer(family)
    question = "What is the capital of France ?"
    reference = " ".join(["Paris"] * 50)
    student = tokenizer(question)["input_ids"]
    full = build_teacher_prompt(tokenizer, student, question, reference)
    assert not full.reference_truncated
    cut = build_teacher_prompt(tokenizer, student, question, reference, max_length=len(full.ids) - 20)
    assert cut.reference_truncated and len(cut.ids) == len(full.ids) - 20
    assert cut.ids[-len(student) + 2 :] == student[2:]  # the question's first token may take the space before it
    assert tokenizer.decode(cut.ids).count("Paris") < 50
    # A budget smaller than the question keeps the whole question and drops the reference.
    tiny = build_teacher_prompt(tokenizer, student, question, reference, max_length=3)
    assert tiny.reference_truncated and "Paris" not in tokenizer.decode(tiny.ids)
    assert tiny.ids[-len(student) + 2 :] == student[2:]


def test_teacher_template_validation():
    validate_teacher_template(DEFAULT_TEACHER_TEMPLATE)
    assert not DEFAULT_TEACHER_TEMPLATE.endswith((" ", "\n"))  # nothing between the student's prompt and z
    with pytest.raises(ValueError, match=r"missing: \['reference'\]"):
        validate_teacher_template("Question: {prompt}")
    with pytest.raises(ValueError, match=r"unknown: \['answer'\]"):
        validate_teacher_template("{reference} {prompt} {answer}")
    with pytest.raises(ValueError, match=r"repeated: \['prompt'\]"):
        validate_teacher_template("{reference} {prompt} {prompt}")


@pytest.mark.parametrize("chat", [False, True])
def test_placeholders_inside_the_data_are_never_filled(chat):
    """A reference that contains `{prompt}` (or a question that contains `{reference}`) stays as written."""
    tokenizer = build_subword_tokenizer("byte_level", GEMMA_LIKE_CHAT_TEMPLATE if chat else None)
    question, reference = "Which {reference} field holds it?", "The {prompt} field holds it."
    if chat:
        prompt = [{"role": "user", "content": question}]
        student = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
    else:
        prompt, student = question, tokenizer(question)["input_ids"]
    text = tokenizer.decode(build_teacher_prompt(tokenizer, student, prompt, reference).ids)
    assert text.count("The {prompt} field holds it.") == 1 and text.count("Which {reference} field holds it?") == 1


# Issue 21 (g): a reference cut to the budget ends on a character boundary, never in half a UTF-8 character.
MULTIBYTE_REFERENCES = [
    "東京は日本の首都です。人口は約一千四百万人です。",
    "Paris 🎉 is the capital 👍🏽 of France 🇫🇷 and 巴黎 is its name in Chinese.",
    "서울은 한국의 수도입니다 😀😀😀 ok",
]


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat"])
def test_a_cut_reference_never_ends_in_half_a_character(chat):
    """Byte-level BPE spreads a CJK character or an emoji over several tokens: every budget that cuts the reference
    cuts it between characters (no U+FFFD in the decoded teacher prompt), and the kept text is a prefix of ŷ."""
    tokenizer = build_subword_tokenizer("byte_level", GEMMA_LIKE_CHAT_TEMPLATE if chat else None)
    question = "What is the capital?"
    if chat:
        prompt = [{"role": "user", "content": question}]
        student = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
    else:
        prompt, student = question, tokenizer(question)["input_ids"]
    cuts = 0
    for reference in MULTIBYTE_REFERENCES:
        full = build_teacher_prompt(tokenizer, student, prompt, reference)
        assert "\ufffd" not in tokenizer.decode(full.ids) and reference in tokenizer.decode(full.ids)
        for budget in range(len(full.ids) - full.reference_tokens + 1, len(full.ids)):
            cut = build_teacher_prompt(tokenizer, student, prompt, reference, max_length=budget)
            text = tokenizer.decode(cut.ids)
            assert cut.reference_truncated and len(cut.ids) <= budget
            assert "\ufffd" not in text, (budget, text)
            kept = text.split("Background reference knowledge: ", 1)[1].split("\nAnswer the question", 1)[0]
            assert reference.startswith(kept), (budget, kept)
            assert cut.ids[-5:] == student[-5:] and question in text  # the question and what follows, untouched
            cuts += 1
    assert cuts > 60


def test_the_rendered_fallback_cuts_the_reference_on_a_character_boundary():
    """The fallback for chat templates that cannot be aligned token by token cuts on a character boundary too."""
    from raft_trainer.teacher_prompts import _rendered_teacher_prompt

    tokenizer = build_subword_tokenizer("byte_level", GEMMA_LIKE_CHAT_TEMPLATE)
    prompt = [{"role": "user", "content": "What is the capital?"}]
    student = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
    for reference in MULTIBYTE_REFERENCES:
        full = _rendered_teacher_prompt(tokenizer, student, prompt, reference, DEFAULT_TEACHER_TEMPLATE, None, {})
        for budget in range(len(full.ids) - full.reference_tokens + 1, len(full.ids)):
            cut = _rendered_teacher_prompt(tokenizer, student, prompt, reference, DEFAULT_TEACHER_TEMPLATE, budget, {})
            assert cut.reference_truncated and "\ufffd" not in tokenizer.decode(cut.ids), budget


def test_the_trainer_cuts_multibyte_references_on_character_boundaries(tmp_path):
    """Through `RAFTTrainer` on a model folder with a byte-level tokenizer: every cut reference decodes cleanly."""
    tokenizer = build_subword_tokenizer("byte_level")
    folder = tmp_path / "model"
    build_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    rows = {"prompt": ["Question: What is the capital?\nAnswer:"] * 3,
            "completion": [f" {r}" for r in MULTIBYTE_REFERENCES]}  # fmt: skip
    args = RAFTConfig(output_dir=str(tmp_path / "out"), report_to=[], save_strategy="no", use_cpu=True,
                      max_completion_length=4, distillation_topk=8)  # fmt: skip
    whole = RAFTTrainer(str(folder), args=args, train_dataset=Dataset.from_dict(rows)).train_dataset
    overhead = len(whole[0]["teacher_prompt_ids"]) - whole[0]["reference_tokens"]  # template, question, BOS
    for budget in range(overhead + 1, overhead + min(whole["reference_tokens"]), 7):
        args.max_teacher_prompt_length = budget
        trainer = RAFTTrainer(str(folder), args=args, train_dataset=Dataset.from_dict(rows))
        dataset = trainer.train_dataset
        assert any(dataset["reference_truncated"])
        for ids in dataset["teacher_prompt_ids"]:
            assert "\ufffd" not in tokenizer.decode(ids), (budget, tokenizer.decode(ids))
