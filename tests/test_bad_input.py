"""Issue 13: the bad-input and server-fault cases that had no test of their own, each checked for what the user sees.

At the CLI (`raft_trainer.cli.main.main` called in-process): the exit code (2 for the user's input, 1 for a server
that kept failing or a folder in use) and the one error line naming the problem; in the API: the typed exception with
the same message. The other cases of the issue are tested where their feature is (the table in the closing note).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time

import pytest
from datasets import Dataset, IterableDataset
from refine_helpers import ScriptedBackend
from test_backends import stub_server  # noqa: F401 - the local OpenAI-compatible stub server (a fixture)

from raft_trainer.cli.main import main

from conftest import build_model, build_tokenizer

GOOD_ROW = '{"question": "What is two plus two ?", "answer": "Two plus two is four ."}\n'
DATA_FLAG = {"train": "--dataset_name", "refine": "--dataset_name", "eval": "--domain_dataset"}


def model_flags(command, model):
    """Each command's model flag (a tiny local model: nothing downloads, and no default model is converted)."""
    return {"train": ["--model_name_or_path", model, "--report_to", "none", "--use_cpu", "true"],
            "refine": ["--rewrite_model", model], "eval": ["--base_model", model]}[command]  # fmt: skip


def cli_error(capsys, args, code=2):
    """Run `raft ARGS` in-process; check the exit code and that no traceback was printed; return stderr from the
    error line on (`raft CMD: error: ...` or, for a server fault, `raft CMD stopped: ...`)."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = err.splitlines()  # progress bars and warnings may come first
    starts = [
        i for i, line in enumerate(lines) if line.startswith((f"raft {args[0]}: error: ", f"raft {args[0]} stopped: "))
    ]
    assert len(starts) == 1, err[-3000:]
    return "\n".join(lines[starts[0] :])


# ---- 1. Empty input: "has no rows", naming the file or split -------------------------------------------------------


@pytest.mark.parametrize(
    "split, train, evaluation",
    [
        ("train", Dataset.from_dict({"prompt": [], "completion": []}), None),
        ("eval", None, Dataset.from_dict({"prompt": [], "completion": []})),
        ("train", IterableDataset.from_generator(lambda: iter(())), None),
    ],
    ids=["empty_train", "empty_eval", "empty_iterable_train"],
)
def test_raft_trainer_refuses_a_dataset_without_rows(tmp_path, plain_dataset, split, train, evaluation):
    from raft_trainer import RAFTConfig, RAFTTrainer

    tokenizer = build_tokenizer()
    args = RAFTConfig(output_dir=str(tmp_path), max_steps=1, use_cpu=True, report_to=[], bf16=False)
    with pytest.raises(ValueError, match=rf"^The {split} dataset has no rows\.$"):
        RAFTTrainer(build_model(tokenizer), args=args, train_dataset=plain_dataset if train is None else train,
                    eval_dataset=evaluation, processing_class=tokenizer,
                    teacher_model=build_model(tokenizer))  # fmt: skip


EMPTY_FILES = {  # name -> (content, the message after the file name)
    "zero_bytes.jsonl": ("", r" is empty \(0 bytes\): the dataset has no rows\."),
    "blank_lines.jsonl": ("\n\n  \n", r" \(split 'train'\) has no rows\."),
    "empty_list.json": ("[]", r" \(split 'train'\) has no rows\."),
    "header_only.csv": ("question,answer\n", r" \(split 'train'\) has no rows\."),
}


@pytest.mark.parametrize("command", ["train", "refine", "eval"])
@pytest.mark.parametrize("name", list(EMPTY_FILES))
def test_a_data_file_without_rows_is_one_line_at_every_command(tmp_path, tiny_model_dir, capsys, command, name):
    content, message = EMPTY_FILES[name]
    path = tmp_path / name
    path.write_text(content)
    line = cli_error(capsys, [command, DATA_FLAG[command], str(path), *model_flags(command, tiny_model_dir),
                              "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert re.fullmatch(rf"raft {command}: error: The data file {re.escape(repr(str(path)))}{message}\n\(set "
                        r"RAFT_TRACEBACK=1 to see where it was raised\)", line), line  # fmt: skip


# ---- 10. A missing local data file fails at once, at every command ----------------------------------------------


@pytest.mark.parametrize("command", ["train", "refine", "eval"])
def test_a_missing_local_data_file_fails_at_once(tmp_path, tiny_model_dir, capsys, command):
    missing = tmp_path / "my_qa.jsonl"
    start = time.perf_counter()
    line = cli_error(capsys, [command, DATA_FLAG[command], str(missing), *model_flags(command, tiny_model_dir),
                              "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert time.perf_counter() - start < 20  # no minute of hub retries
    assert line.startswith(f"raft {command}: error: No such data file: {str(missing)!r} (a .jsonl name is read as a "
                           "local file).")  # fmt: skip


# ---- 2. Every row dropped by max_length, every reference cut by the teacher budget: one line at the CLI ----------


@pytest.mark.parametrize(
    "flag, value, message",
    [("--max_length", "4", r"Every one of the 8 rows of the train dataset was dropped: its prompt alone fills "
      r"`max_length` \(4\).* The prompts are (\d+)–(\d+) tokens long; raise `max_length` above \2"),
     ("--max_teacher_prompt_length", "5", r"The teacher prompt budget of 5 tokens \(`max_teacher_prompt_length`, "
      r"else `max_length`\) left no token of any reference")],
)  # fmt: skip
def test_raft_train_names_the_length_that_leaves_nothing_to_train_on(
    tmp_path, tiny_model_dir, plain_dataset, capsys, flag, value, message
):
    data = tmp_path / "train.jsonl"
    plain_dataset.to_json(data)
    line = cli_error(capsys, ["train", "--dataset_name", str(data), *model_flags("train", tiny_model_dir), flag,
                              value, "--max_steps", "1", "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert re.match(f"raft train: error: {message}", line), line
    assert not (tmp_path / "out" / "model.safetensors").exists()


# ---- 4. An HTTP server that keeps failing: retried with backoff, then the resume message; the same command resumes -


def test_a_failing_http_server_stops_refine_with_the_resume_message_and_the_same_command_resumes(
    tmp_path,
    stub_server,  # noqa: F811 - the fixture imported above
    capsys,
    caplog,
):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"Question {i} ?", "answer": "Two plus two is "
                                        "four ."}) + "\n" for i in range(2)))  # fmt: skip
    out = tmp_path / "refined"
    spec = f"rewriter@http://127.0.0.1:{stub_server.server_address[1]}/v1"
    command = ["refine", "--dataset_name", str(data), "--rewrite_model", spec, "--fusion", "false", "--batch_size",
               "1", "--max_retries", "1", "--output_dir", str(out)]  # fmt: skip
    stub_server.script = [200, "in_band_error", "in_band_error"]  # row q0 answered, then q1 fails twice
    with caplog.at_level("WARNING", logger="raft_trainer.backends.http"):
        message = cli_error(capsys, command, code=1)
    assert "retry 1/1 in 1.0s" in caplog.text  # backoff before the retry
    assert message == (
        f"raft refine stopped: {spec} failed 2 times; last error: the server answered with an error object: "
        f"\"{{'message': 'model overloaded', 'code': 503}}\"\n1 refined rows are saved in {out / 'refined.jsonl'}; "
        "run the same command again to resume."
    )
    assert len(stub_server.requests) == 3
    assert [json.loads(line)["id"] for line in open(out / "refined.jsonl")] == ["q0"]

    main(command)  # the server answers again: the same command finishes the run
    assert "refined data:" in capsys.readouterr().out
    assert len(stub_server.requests) == 4  # only q1 was asked again
    assert [json.loads(line)["id"] for line in open(out / "refined.jsonl")] == ["q0", "q1"]


# ---- 6. A second `raft refine` on a folder another process holds -------------------------------------------------


def test_raft_refine_on_a_folder_another_process_holds_is_refused(tmp_path, tiny_model_dir, capsys):
    from raft_trainer.refine.store import LOCK_FILE

    data = tmp_path / "qa.jsonl"
    data.write_text(GOOD_ROW)
    out = tmp_path / "refined"
    out.mkdir()
    holder = subprocess.Popen(  # another run: a separate process holding the folder's lock
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('held', flush=True); time.sleep(120)", str(out / LOCK_FILE)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        line = cli_error(capsys, ["refine", "--dataset_name", str(data), "--rewrite_model", tiny_model_dir,
                                  "--output_dir", str(out)], code=1)  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert line.startswith(f"raft refine: error: another run holds {out} (raft refine writes there now); wait for it "
                           "to finish or choose another --output_dir")  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing written


# ---- 7. Malformed data files at `raft refine` and `raft eval` (`raft train`: tests/test_data.py) -----------------

MALFORMED = {  # name -> (bytes, the message after "<path>, line ")
    "bad_line.jsonl": (GOOD_ROW + '{"question": "Q?" "answer": "A."}\n' + GOOD_ROW,
                       r"2: not valid JSON \(Expecting ',' delimiter, column 19\): '\{\"question\": \"Q\?\" \"answer"),
    "truncated.jsonl": (GOOD_ROW * 2 + '{"question": "Q?", "ans', r"3: not valid JSON \(Unterminated string "
                        r"starting at, column 20\): '\{\"question\": \"Q\?\", \"ans'$"),
    "utf16.jsonl": ((GOOD_ROW * 2).encode("utf-16"), r"1: not UTF-8 text \(invalid start byte at byte 0\); save the "
                    r"file as UTF-8"),
}  # fmt: skip


@pytest.mark.parametrize("command", ["refine", "eval"])
@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_data_files_name_the_file_and_line_at_refine_and_eval(tmp_path, tiny_model_dir, capsys, command,
                                                                         name):  # fmt: skip
    content, message = MALFORMED[name]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    line = cli_error(capsys, [command, DATA_FLAG[command], str(path), *model_flags(command, tiny_model_dir),
                              "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert re.match(f"raft {command}: error: {re.escape(str(path))}, line {message}", line, re.M), line


# ---- 9. `raft eval` side files: malformed or empty probes and IFEval files, named before any model loads ---------


@pytest.mark.parametrize(
    "flag, metric, content, message",
    [("--probes_file", "probes", '{"question": "Q?", "answer": "A"}\n{"question": "Q2?", answer: "B"}\n',
      r"{path}, line 2: not valid JSON \(Expecting property name enclosed in double quotes, column 21\): "
      r"'\{\"question\": \"Q2\?\", answer: \"B\"\}'$"),
     ("--probes_file", "probes", '{"question": "Q?", "answer": "A"}\n'.encode("utf-16"),
      r"{path}, line 1: not UTF-8 text"),
     ("--probes_file", "probes", "\n", r"The probes file '{path}' has no rows\."),
     ("--ifeval_dataset", "ifeval", '{"prompt": "Say hi.", "instruction_id_list": []}\n{"prompt": "Wri',
      r"{path}, line 2: not valid JSON \(Unterminated string"),
     ("--ifeval_dataset", "ifeval", "", r"The IFEval source '{path}' has no rows\.")],
    ids=["probes_bad_line", "probes_utf16", "probes_empty", "ifeval_truncated", "ifeval_empty"],
)  # fmt: skip
def test_malformed_or_empty_eval_side_files_are_named_before_any_model_loads(tmp_path, capsys, flag, metric, content,
                                                                             message):  # fmt: skip
    path = tmp_path / f"{metric}.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    line = cli_error(capsys, ["eval", "--base_model", str(tmp_path / "no-such-model"), "--metrics", metric, flag,
                              str(path), "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert re.match("raft eval: error: " + message.replace("{path}", re.escape(str(path))), line, re.M), line


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_a_missing_optional_package_is_one_line_before_any_model_loads(tmp_path, capsys):
    line = cli_error(capsys, ["eval", "--base_model", str(tmp_path / "no-such-model"), "--report_to", "wandb",
                              "--output_dir", str(tmp_path / "out")], code=1)  # fmt: skip
    assert line.startswith("raft eval: error: --report_to wandb needs `pip install wandb`\n")


# ---- 8. Placeholders inside the data are never filled: fusion and judge prompts, the eval judge -----------------


class AcceptAll:
    """A semantic filter that keeps every rewrite (no embedding model to load)."""

    name = "accept-all"

    def similarities(self, golds, rewrites):
        return [1.0] * len(golds)

    def accepts(self, similarity):
        return True


def test_placeholders_inside_the_data_reach_the_fusion_and_judge_prompts_as_written(tmp_path):
    from raft_trainer.backends import BackendPool
    from raft_trainer.refine import RefineConfig, refine

    question, gold = "Is {answer} the same as {rewrite}?", "No: {question} and {candidate} are two slots."
    rewrite, fused = "The slots {answer} and {question} differ.", "Merged {rewrite} with {candidate}."
    backends = BackendPool(rewriter=ScriptedBackend("rewriter", lambda p: rewrite),
                           fuser=ScriptedBackend("fuser", lambda p: fused),
                           judge=ScriptedBackend("judge", lambda p: "0.9"))  # fmt: skip
    config = RefineConfig(output_dir=str(tmp_path / "out"), rewrite_model="rewriter", fusion_model="fuser",
                          judge_models=["judge"], fusion_rounds=1, output_format="conversational")  # fmt: skip
    refine(config, Dataset.from_dict({"question": [question], "answer": [gold]}), backends=backends,
           semantic_filter=AcceptAll())  # fmt: skip
    [[rewrite_prompt]] = [c[0] for c in backends.get("rewriter").calls]
    [[fusion_prompt]] = [c[0] for c in backends.get("fuser").calls]
    [[judge_prompt]] = [c[0] for c in backends.get("judge").calls]
    assert rewrite_prompt.endswith(f"\n\nQuestion: {question}\nReference answer: {gold}\nRewritten answer:")
    assert fusion_prompt.endswith(f"\n\nQuestion: {question}\nReference answer: {gold}\nDraft answer: {rewrite}\n"
                                  "Merged answer:")  # fmt: skip
    assert judge_prompt.endswith(f"\n\nQuestion: {question}\nReference answer: {gold}\nCandidate answer: {fused}\n"
                                 "Score (0 to 1):")  # fmt: skip
    [row] = [json.loads(line) for line in open(tmp_path / "out" / "refined.jsonl")]
    assert row["completion"][0]["content"] == fused and row["prompt"][0]["content"] == question


def test_placeholders_inside_the_data_reach_the_eval_judge_as_written(tmp_path):
    from raft_trainer.eval import EvalConfig
    from raft_trainer.eval.metrics import domain_scores
    from raft_trainer.eval.runner import EvalData

    question, gold, answer = "What is {answer}?", "{candidate} is 42", "I think {question} is 42"
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": question, "answer": gold}) + "\n")
    judge = ScriptedBackend("judge", lambda p: "yes")
    config = EvalConfig(domain_dataset=str(path), output_format="plain", metrics=["domain"])
    domain_scores(ScriptedBackend("model", lambda p: answer), EvalData.load(config), [judge], config)
    [[judge_prompt]] = [c[0] for c in judge.calls]
    assert judge_prompt.endswith(f"\n\nQuestion: {question}\nReference answer: {gold}\nCandidate answer: {answer}\n"
                                 "Correct (yes or no):")  # fmt: skip


# ---- Issue 21. IFEval kwargs the checker would fail on are named before any model loads ----------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [({"num_words": "300", "relation": "less than"}, r"'num_words' must be an integer, got the str '300'"),
     ({"num_words": 300, "relation": "more than"}, r"the checker fails on \{'num_words': 300, 'relation': 'more "
      r"than'\}: ValueError: The supported relation for comparison must be in \('less than', 'at least'\), but "
      r"more than is given"),
     ({"num_word": 300}, r"'num_word' is not an argument of this instruction's checker \(it takes \['num_words', "
      r"'relation'\]\)")],
    ids=["wrong_type", "refused_value", "unknown_key"],
)  # fmt: skip
def test_ifeval_kwargs_the_checker_would_fail_on_are_named_before_any_model_loads(tmp_path, capsys, kwargs, message):
    path = tmp_path / "ifeval.jsonl"
    rows = [{"prompt": "Say hi.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
            {"prompt": "Describe a cat.", "instruction_id_list": ["punctuation:no_comma",
             "length_constraints:number_words"], "kwargs": [{}, kwargs]}]  # fmt: skip
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    line = cli_error(capsys, ["eval", "--base_model", str(tmp_path / "no-such-model"), "--metrics", "ifeval",
                              "--ifeval_dataset", str(path), "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert re.match(rf"raft eval: error: {re.escape(str(path))}, row 2: 'kwargs' of instruction 2 "
                    rf"\('length_constraints:number_words'\): {message}\.\n", line), line  # fmt: skip


# ---- Issue 21. The files of a `datasets:` mixture get the checks a single --dataset_name file gets ---------------


@pytest.mark.parametrize(
    "content, message",
    [("", r"The data file {path} is empty \(0 bytes\): the dataset has no rows\."),
     ("\n\n", r"The data file {path} \(split 'train'\) has no rows\."),
     (GOOD_ROW + '{"question": "Q?" "answer": "A."}\n', r"{file}, line 2: not valid JSON \(Expecting ',' delimiter, "
      r"column 19\): '\{\"question\": \"Q\?\" \"answer\": \"A\.\"\}'"),
     (GOOD_ROW + '[{"question": "Q?", "answer": "A."}]\n', r"{file}, line 2: expected one JSON object per line, got "
      r"a list: '\[\{\"question\": \"Q\?\", \"answer\": \"A\.\"\}\]'")],
    ids=["zero_bytes", "blank_lines", "bad_line", "not_an_object"],
)  # fmt: skip
def test_a_mixture_file_is_checked_as_a_single_data_file_is(tmp_path, tiny_model_dir, capsys, content, message):
    good, bad = tmp_path / "good.jsonl", tmp_path / "second.jsonl"
    good.write_text(GOOD_ROW * 4)
    bad.write_text(content)
    config = tmp_path / "mixture.yaml"
    config.write_text(f"datasets:\n  - {{path: json, data_files: {good}}}\n  - {{path: json, data_files: {bad}}}\n")
    line = cli_error(capsys, ["train", "--config", str(config), *model_flags("train", tiny_model_dir), "--max_steps",
                              "1", "--output_dir", str(tmp_path / "out")])  # fmt: skip
    expected = message.replace("{path}", re.escape(repr(str(bad)))).replace("{file}", re.escape(str(bad)))
    assert re.match(f"raft train: error: {expected}\n", line), line


# ---- Issue 21. A checkpoint the disk had no room for: one line naming the folder, the cause and the free space -----

TORCH_WRITE_FAILURE = "[enforce fail at inline_container.cc:664] . unexpected pos 56640 vs 56528"


@pytest.mark.parametrize(
    "error, disk_full, reason",
    [(RuntimeError(TORCH_WRITE_FAILURE), False, rf"the write failed \(RuntimeError: {re.escape(TORCH_WRITE_FAILURE)}"),
     (RuntimeError(TORCH_WRITE_FAILURE), True, rf"the disk is full \(RuntimeError: {re.escape(TORCH_WRITE_FAILURE)}"),
     (OSError(28, "No space left on device"), False, r"the disk is full \(OSError: \[Errno 28\] No space left on "
      r"device")],
    ids=["torch_writer_message", "torch_writer_message_disk_full", "enospc"],
)  # fmt: skip
def test_a_failed_checkpoint_write_names_the_folder_and_the_full_disk(
    tmp_path, tiny_model_dir, plain_dataset, capsys, monkeypatch, error, disk_full, reason
):
    import torch

    from raft_trainer.errors import CheckpointWriteError

    data = tmp_path / "train.jsonl"
    plain_dataset.to_json(data)

    def failing_save(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch, "save", failing_save)  # training_args.bin, optimizer.pt, ...: the checkpoint's writes
    if disk_full:  # torch's message alone never says why: the free space on the folder's disk does
        monkeypatch.setattr(CheckpointWriteError, "ALMOST_FULL_BYTES", 2**62)
    out = tmp_path / "out"
    line = cli_error(capsys, ["train", "--dataset_name", str(data), *model_flags("train", tiny_model_dir),
                              "--max_steps", "1", "--save_steps", "1", "--max_completion_length", "8",
                              "--output_dir", str(out)], code=1)  # fmt: skip
    folder = out / "checkpoint-1"
    assert re.match(rf"raft train: error: Could not save the checkpoint {re.escape(str(folder))}: {reason}; "
                    r"[\d,.]+ MiB free on that disk\)\. Earlier checkpoints are untouched; "
                    rf"{re.escape(str(folder))} is incomplete: delete it before resuming", line), line  # fmt: skip
