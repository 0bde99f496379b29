"""Accepted dataset formats, rejected ones (with the columns named) and bad rows."""

import pytest
from datasets import Dataset

from raft_trainer.data import check_chat_template, normalize_dataset

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
    with pytest.raises(ValueError, match=r"has columns \['query', 'response'\].*expects 'prompt' and 'completion'"):
        normalize_dataset(Dataset.from_dict({"query": ["Q?"], "response": ["A."]}))
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


def test_conversational_data_with_tokenizer_without_chat_template_is_refused():
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": "Q?"}], "completion": [{"role": "assistant",
                                                                                           "content": "A."}]}])  # fmt: skip
    with pytest.raises(ValueError, match="no chat template"):
        check_chat_template(build_tokenizer(chat_template=False), normalize_dataset(ds))
    check_chat_template(build_tokenizer(), normalize_dataset(ds))


def test_empty_and_missing_data_files_are_named(tmp_path):
    from raft_trainer.data import load_data

    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"empty\.jsonl' is empty \(0 bytes\)"):
        load_data(str(tmp_path / "empty.jsonl"))
    with pytest.raises(ValueError, match=r"No such data file: '.*my_qa\.jsonl'"):
        load_data(str(tmp_path / "my_qa.jsonl"))
    with pytest.raises(ValueError, match="The train dataset has no rows"):
        normalize_dataset(Dataset.from_dict({"prompt": [], "completion": []}))


GOOD_ROW = '{"prompt": "Q?", "completion": "A."}\n'


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad_line.jsonl", GOOD_ROW + '{"prompt": "Q?" "completion": "A."}\n' + GOOD_ROW,
         r"bad_line\.jsonl, line 2: not valid JSON \(Expecting ',' delimiter, column 17\): '\{\"prompt\""),
        ("truncated.jsonl", GOOD_ROW * 2 + '{"prompt": "Q?", "compl',
         r"truncated\.jsonl, line 3: not valid JSON \(Unterminated string"),
        ("utf16.jsonl", (GOOD_ROW * 2).encode("utf-16"), r"utf16\.jsonl, line 1: not UTF-8 text"),
        ("list_line.jsonl", GOOD_ROW + '["Q?", "A."]\n', r"list_line\.jsonl, line 2: expected one JSON object per line, got a list"),
        ("broken.json", '[{"prompt": "Q?",\n "completion": "A."},\n {"prompt": }]', r"broken\.json, line 3: not valid JSON"),
        ("bad.csv", b"prompt,completion\n\"Q?\",\"A.\n", r"Could not read the data file '.*bad\.csv'"),
    ],
)  # fmt: skip
def test_malformed_data_files_name_the_file_line_and_text(tmp_path, name, content, message):
    from raft_trainer.data import load_data

    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(ValueError, match=message):
        load_data(str(path))


def test_a_utf8_byte_order_mark_is_read(tmp_path):
    from raft_trainer.data import load_data, read_jsonl

    path = tmp_path / "bom.jsonl"
    path.write_bytes(("\ufeff" + GOOD_ROW * 2).encode("utf-8"))
    assert read_jsonl(str(path)) == [{"prompt": "Q?", "completion": "A."}] * 2
    assert len(load_data(str(path))) == 2


def test_the_cli_prints_one_line_for_bad_data(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.jsonl"
    bad.write_text(GOOD_ROW + "{not json}\n")
    out = subprocess.run([sys.executable, "-m", "raft_trainer.cli.main", "train", "--dataset_name", str(bad),
                          "--output_dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"raft train: error: {bad}, line 2: not valid JSON" in out.stderr


def test_question_answer_rows_become_prompts_in_the_tokenizers_format():
    qa = Dataset.from_dict({"question": [" What is 2 + 2? "], "answer": ["Four."]})
    plain = normalize_dataset(qa, qa_format="plain")[0]
    assert (plain["prompt"], plain["completion"], plain["reference"]) == (
        "Question: What is 2 + 2?\nAnswer:",
        " Four.",
        " Four.",
    )
    chat = normalize_dataset(qa, qa_format=lambda: "conversational")[0]
    assert chat["prompt"] == [{"role": "user", "content": "What is 2 + 2?"}]
    assert chat["completion"] == [{"role": "assistant", "content": "Four."}] and chat["reference"] == "Four."


def test_sharegpt_conversations_are_converted_by_trl_with_chat_role_names():
    rows = Dataset.from_dict({"conversations": [[{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi?"},
                                                 {"from": "gpt", "value": "Hello."}]]})  # fmt: skip
    row = normalize_dataset(rows)[0]
    assert row["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    assert row["completion"] == [{"role": "assistant", "content": "Hello."}] and row["reference"] == "Hello."
