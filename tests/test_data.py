"""Accepted dataset formats, rejected ones (with the columns named), bad rows, and the teacher prompt budget."""

import pytest
from datasets import Dataset

from raft_trainer.data import (
    DEFAULT_TEACHER_TEMPLATE,
    check_chat_template,
    normalize_dataset,
    tokenize_teacher_prompt,
    validate_teacher_template,
)

from conftest import build_tokenizer


def test_plain_prompt_completion_gets_the_target_as_default_reference():
    ds = normalize_dataset(Dataset.from_dict({"prompt": ["Q?"], "completion": [" A."]}))
    assert ds[0]["reference"] == " A."


def test_explicit_reference_column_is_kept():
    ds = normalize_dataset(Dataset.from_dict({"prompt": ["Q?"], "completion": [" A."], "reference": ["fused A."]}))
    assert ds[0]["reference"] == "fused A."


def test_conversational_prompt_completion():
    ds = normalize_dataset(Dataset.from_list([{
        "prompt": [{"role": "user", "content": "Q?"}], "completion": [{"role": "assistant", "content": "A."}],
    }]))  # fmt: skip
    assert ds[0]["reference"] == "A."


def test_messages_split_at_the_last_assistant_turn():
    messages = [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]  # fmt: skip
    ds = normalize_dataset(Dataset.from_list([{"messages": messages}]))
    assert "messages" not in ds.column_names
    assert [m["content"] for m in ds[0]["prompt"]] == ["Be brief.", "Hi", "Hello.", "Capital of France?"]
    assert ds[0]["completion"] == [{"role": "assistant", "content": "Paris."}] and ds[0]["reference"] == "Paris."


def test_unknown_format_names_found_and_expected_columns():
    with pytest.raises(ValueError, match=r"has columns \['question', 'answer'\].*expects 'prompt' and 'completion'"):
        normalize_dataset(Dataset.from_dict({"question": ["Q?"], "answer": ["A."]}))
    with pytest.raises(ValueError, match=r"\['text'\]"):
        normalize_dataset(Dataset.from_dict({"text": ["Q? A."]}))


@pytest.mark.parametrize(
    ("prompt", "completion", "reason"),
    [("Q?", "", "empty or non-text completion"), ("  ", " A.", "empty or non-text prompt"),
     ("Q?", None, "empty or non-text completion")],
)  # fmt: skip
def test_bad_rows_are_reported_with_their_index(prompt, completion, reason):
    ds = Dataset.from_dict({"prompt": ["Fine?", prompt], "completion": [" Yes.", completion]})
    with pytest.raises(ValueError, match=rf"1 of 2 rows .*row 1: {reason}"):
        normalize_dataset(ds)


def test_messages_without_assistant_turn_is_a_bad_row():
    with pytest.raises(ValueError, match="row 0: empty or non-text completion"):
        normalize_dataset(Dataset.from_list([{"messages": [{"role": "user", "content": "Hi"}]}]))


def test_tokenized_dataset_without_teacher_prompt_is_refused():
    with pytest.raises(ValueError, match="teacher_prompt_ids"):
        normalize_dataset(Dataset.from_dict({"input_ids": [[1, 2]], "labels": [[-100, 2]]}))


def test_teacher_template_validation():
    validate_teacher_template(DEFAULT_TEACHER_TEMPLATE)
    with pytest.raises(ValueError, match=r"missing: \['reference'\]"):
        validate_teacher_template("Question: {prompt}")
    with pytest.raises(ValueError, match=r"unknown: \['answer'\]"):
        validate_teacher_template("{reference} {prompt} {answer}")


def test_teacher_prompt_cuts_the_reference_never_the_question():
    tokenizer = build_tokenizer(chat_template=False)
    question = "What is the capital of France ?"
    reference = " ".join(["Paris"] * 50)
    full, truncated = tokenize_teacher_prompt(tokenizer, question, reference, template=DEFAULT_TEACHER_TEMPLATE,
                                              max_length=None)  # fmt: skip
    assert not truncated
    cut, truncated = tokenize_teacher_prompt(tokenizer, question, reference, template=DEFAULT_TEACHER_TEMPLATE,
                                             max_length=30)  # fmt: skip
    assert truncated and len(cut) == 30 and len(full) > 30
    text = tokenizer.decode(cut)
    assert question in text and text.count("Paris") < 50
    # A budget smaller than the question keeps the whole question and drops the reference.
    tiny, _ = tokenize_teacher_prompt(tokenizer, question, reference, template=DEFAULT_TEACHER_TEMPLATE, max_length=3)
    assert question in tokenizer.decode(tiny) and "Paris" not in tokenizer.decode(tiny)


def test_conversational_teacher_prompt_wraps_the_template_in_the_last_user_turn():
    tokenizer = build_tokenizer()
    prompt = [{"role": "system", "content": "The court ."}, {"role": "user", "content": "What is two plus two ?"}]
    ids, _ = tokenize_teacher_prompt(tokenizer, prompt, "Two plus two is four .", template=DEFAULT_TEACHER_TEMPLATE,
                                     max_length=None)  # fmt: skip
    text = tokenizer.decode(ids)
    assert text.startswith("<|system|> The court . <|end|> <|user|> Background reference")
    assert "Two plus two is four . Answer the question" in text
    assert text.endswith("What is two plus two ? <unk> <|end|> <|assistant|>")


def test_conversational_data_with_tokenizer_without_chat_template_is_refused():
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": "Q?"}], "completion": [{"role": "assistant",
                                                                                           "content": "A."}]}])  # fmt: skip
    with pytest.raises(ValueError, match="no chat template"):
        check_chat_template(build_tokenizer(chat_template=False), normalize_dataset(ds))
    check_chat_template(build_tokenizer(), normalize_dataset(ds))
