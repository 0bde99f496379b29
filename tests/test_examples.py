"""The example script (TRL's SFT script with the trainer swapped) and the `raft train` CLI, run for a few steps."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trl

ROOT = Path(__file__).resolve().parents[1]
SMALL_RUN = [
    "--max_steps",
    "2",
    "--per_device_train_batch_size",
    "2",
    "--max_completion_length",
    "4",
    "--distillation_topk",
    "8",
    "--report_to",
    "none",
    "--logging_steps",
    "1",
    "--save_strategy",
    "no",
]


@pytest.fixture
def data_dir(tmp_path, plain_dataset):
    path = tmp_path / "data"
    path.mkdir()
    plain_dataset.to_json(path / "train.jsonl")
    return path


def raft_train(model_dir, data) -> list[str]:
    """The start of a `raft train` command line on `model_dir` and `data`, run as a subprocess."""
    return [
        sys.executable,
        "-m",
        "raft_trainer.cli.main",
        "train",
        "--model_name_or_path",
        model_dir,
        "--dataset_name",
        data,
    ]


def run(args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def _code_and_imports(source: str, rename: dict[str, str]) -> tuple[str, set[str]]:
    """The AST without docstring and imports (names renamed), and the set of imported names."""
    tree = ast.parse(source)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            node.id = rename.get(node.id, node.id)
        for field in ("body", "orelse"):
            statements = getattr(node, field, None)
            if isinstance(statements, list):
                for statement in [s for s in statements if isinstance(s, (ast.Import, ast.ImportFrom))]:
                    imported |= {rename.get(alias.name, alias.name) for alias in statement.names}
                    statements.remove(statement)
    tree.body = [s for s in tree.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return ast.dump(tree), imported


def test_example_is_trl_sft_script_with_only_trainer_and_config_swapped():
    ours = (ROOT / "examples" / "sft_raft.py").read_text()
    theirs = (Path(trl.__file__).parent / "scripts" / "sft.py").read_text()
    assert "RAFTTrainer(" in ours and "SFTTrainer" not in ours.split('"""')[2]
    code, imports = _code_and_imports(ours, {"RAFTTrainer": "SFTTrainer", "RAFTConfig": "SFTConfig"})
    assert (code, imports) == _code_and_imports(theirs, {})


def test_example_script_trains_a_few_steps(tmp_path, tiny_model_dir, data_dir):
    output = run(
        [
            sys.executable,
            str(ROOT / "examples" / "sft_raft.py"),
            "--model_name_or_path",
            tiny_model_dir,
            "--dataset_name",
            str(data_dir),
            "--output_dir",
            str(tmp_path / "out"),
            *SMALL_RUN,
        ],
        cwd=tmp_path,
    )
    assert "raft/lambda" in output and "raft/kl_loss" in output
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_cli_trains_from_a_yaml_recipe_and_writes_its_log(tmp_path, tiny_model_dir, plain_dataset):
    data = tmp_path / "domain.jsonl"
    plain_dataset.to_json(data)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model_name_or_path: {tiny_model_dir}\ndataset_name: {data}\ndistillation_temperature: 2.0\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    output = run(
        [sys.executable, "-m", "raft_trainer.cli.main", "train", "--config", str(recipe), *SMALL_RUN], tmp_path
    )
    assert "RAFT training done: 2 steps" in output
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    steps = [log for log in history if "raft/lambda" in log]
    assert len(steps) == 2 and all(log["raft/kl_loss"] >= 0 for log in steps)
    results = json.loads((tmp_path / "out" / "all_results.json").read_text())  # the standard files of a TRL run
    assert results["epoch"] > 0 and "train_runtime" in results and (tmp_path / "out" / "train_results.json").exists()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "arXiv:2606.00147" in card and "huggingface.co/None" not in card


def test_cli_rejects_unknown_commands():
    out = subprocess.run([sys.executable, "-m", "raft_trainer.cli.main", "fly"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown command 'fly'" in out.stderr
    out = subprocess.run([sys.executable, "-m", "raft_trainer.cli.main", "trian"], capture_output=True, text=True)
    assert out.returncode == 2 and "did you mean train?" in out.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--fixed_lambda", "nan"], "raft train: error: .*fixed_lambda"),  # refused in RAFTConfig
        (["train", "--distilation_topk", "64"], "unknown flag --distilation_topk; did you mean --distillation_topk?"),
        (["train", "--max_step", "3"], "unknown flag --max_step; did you mean --max_steps?"),  # no abbreviations
        (
            ["refine", "--judge_retry", "2"],
            "raft refine: error: unknown flag --judge_retry; did you mean --judge_retries?",
        ),
        (["eval", "--domain_dataset", "missing.jsonl"], "raft eval: error: No such data file: 'missing.jsonl'"),
    ],
)
def test_cli_mistakes_are_one_line_and_exit_2(tmp_path, args, message):
    import re

    command = [sys.executable, "-m", "raft_trainer.cli.main", *args, "--output_dir", str(tmp_path / "out")]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert re.search(message, out.stderr), out.stderr[-2000:]


def test_cli_version_and_env():
    from importlib.metadata import version

    out = subprocess.run([sys.executable, "-m", "raft_trainer.cli.main", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"raft_trainer {version('raft_trainer')}"
    out = subprocess.run([sys.executable, "-m", "raft_trainer.cli.main", "env"], capture_output=True, text=True)
    assert out.returncode == 0 and f"trl: {version('trl')}" in out.stdout and "torch: " in out.stdout


@pytest.mark.parametrize("layout", ["question_answer", "sharegpt"])
def test_raft_train_accepts_question_answer_and_sharegpt_data(tmp_path, tiny_model_dir, layout):
    rows = [("What is the capital of France?", "Paris."), ("How many legs has a spider?", "Eight.")] * 2
    if layout == "question_answer":
        lines = [{"question": q, "answer": a} for q, a in rows]
    else:
        lines = [{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]} for q, a in rows]
    data = tmp_path / f"{layout}.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    output = run(
        [
            *raft_train(tiny_model_dir, str(data)),
            "--output_dir",
            str(tmp_path / "out"),
            "--use_cpu",
            "true",
            *SMALL_RUN,
        ],
        tmp_path,
    )
    assert "RAFT training done: 2 steps" in output


def test_raft_options_come_first_in_help():
    from raft_trainer.cli.train import make_parser

    text = make_parser().format_help()
    raft, rest = text.index("RAFT options"), text.index("data, training (SFTConfig")
    assert raft < rest and raft < text.index("  --distillation_topk") < rest < text.index("  --learning_rate ")
    flat = " ".join(text.split())  # RAFTConfig's docstring is the help of its flags
    assert "K: the teacher's top-K tokens over which both distributions are renormalised. (default: 512)" in flat
    assert "--no_use_distillation, --no-use-distillation Same as --use_distillation false." in flat
    assert text.startswith("usage: raft train [--config FILE.yaml]")


def write_qa(path, rows, question="question", answer="answer"):
    path.write_text("".join(json.dumps({question: q, answer: a}) + "\n" for q, a in rows))
    return str(path)


def test_train_data_mixture_question_columns_and_held_out_rows(tmp_path):
    """TRL's `datasets:` mixture (fractions, test_split_size) and `--question_column/--answer_column` renaming."""
    from trl import DatasetMixtureConfig

    from raft_trainer.cli.train import load_train_and_eval_data, script_arguments

    first = write_qa(tmp_path / "a.jsonl", [(f"q{i}", f"a{i}") for i in range(30)], "q", "a")
    second = write_qa(tmp_path / "b.jsonl", [(f"Q{i}", f"A{i}") for i in range(10)], "q", "a")
    mixture = DatasetMixtureConfig(
        datasets=[
            {"path": "json", "data_files": first, "fraction": 0.5},
            {"path": "json", "data_files": second, "fraction": 0.5},
        ],
        test_split_size=0.25,
    )
    args = script_arguments()(question_column="q", answer_column="a")
    train, held_out = load_train_and_eval_data(args, type("Args", (), {"eval_strategy": "steps"}), mixture)
    assert train.column_names == held_out.column_names == ["question", "answer"]
    assert (len(train), len(held_out)) == (15, 5)  # 10 + 10 rows (equal shares, no oversampling), 25% held out
    no_eval = type("Args", (), {"eval_strategy": "no"})
    train, held_out = load_train_and_eval_data(
        script_arguments()(dataset_name=first, question_column="q", answer_column="a"), no_eval
    )
    assert len(train) == 30 and held_out is None and train[0] == {"question": "q0", "answer": "a0"}
    with pytest.raises(ValueError, match=r"no column \['prompt'\] in the data; its columns are \['q', 'a'\]"):
        load_train_and_eval_data(script_arguments()(dataset_name=first, question_column="prompt"), no_eval)
    with pytest.raises(ValueError, match="both --dataset_name and a `datasets:` mixture"):
        load_train_and_eval_data(script_arguments()(dataset_name=first), no_eval, mixture)
    mixture.test_split_size = None
    with pytest.raises(ValueError, match="set `test_split_size` in the mixture"):
        load_train_and_eval_data(script_arguments()(), type("Args", (), {"eval_strategy": "steps"}), mixture)


def test_raft_train_reads_a_mixture_from_its_yaml(tmp_path, tiny_model_dir, capsys):
    from raft_trainer.cli.main import main as raft

    rows = [("What is the capital of France?", "Paris."), ("How many legs has a spider?", "Eight.")] * 4
    config = tmp_path / "mix.yaml"
    config.write_text(
        f"model_name_or_path: {tiny_model_dir}\nquestion_column: q\nanswer_column: a\ndatasets:\n"
        f"  - {{path: json, data_files: {write_qa(tmp_path / 'a.jsonl', rows, 'q', 'a')}}}\n"
        f"  - {{path: json, data_files: {write_qa(tmp_path / 'b.jsonl', rows[:4], 'q', 'a')}}}\n"
        "test_split_size: 0.25\neval_strategy: steps\neval_steps: 2\n"
    )
    raft(["train", "--config", str(config), "--output_dir", str(tmp_path / "out"), "--use_cpu", "true", *SMALL_RUN])
    assert "RAFT training done: 2 steps" in capsys.readouterr().out
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    assert [log["step"] for log in history if "eval_loss" in log] == [2]


def test_raft_train_evaluates_on_a_held_out_file(tmp_path, tiny_model_dir, plain_dataset):
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    plain_dataset.to_json(train)
    plain_dataset.select(range(4)).to_json(test)
    common = [
        *raft_train(tiny_model_dir, str(train)),
        "--use_cpu",
        "true",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "1",
        "--per_device_eval_batch_size",
        "2",
        *SMALL_RUN,
    ]
    run([*common, "--dataset_test_split", str(test), "--output_dir", str(tmp_path / "out")], tmp_path)
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    assert [log["step"] for log in history if "eval_loss" in log] == [1, 2]
    out = subprocess.run(
        [*common, "--output_dir", str(tmp_path / "out2")], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 2 and "pass the held-out file as --dataset_test_split" in out.stderr


def test_raft_train_turns_on_the_forgetting_monitor(tmp_path, tiny_model_dir, plain_dataset):
    plain_dataset.to_json(tmp_path / "train.jsonl")
    run(
        [
            *raft_train(tiny_model_dir, str(tmp_path / "train.jsonl")),
            "--use_cpu",
            "true",
            "--forgetting_monitor_steps",
            "1",
            "--output_dir",
            str(tmp_path / "out"),
            *SMALL_RUN,
        ],
        tmp_path,
    )
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    monitored = [log for log in history if "forgetting/probe_accuracy" in log]
    assert [log["step"] for log in monitored] == [1, 2] and all(log["forgetting/drift_kl"] >= 0 for log in monitored)


def test_cli_names_wrong_columns_with_the_columns_found(tmp_path, tiny_model_dir):
    data = tmp_path / "wrong.jsonl"
    data.write_text(json.dumps({"query": "Q?", "response": "A."}) + "\n")
    command = [
        *raft_train(tiny_model_dir, str(data)),
        "--output_dir",
        str(tmp_path / "out"),
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "has columns ['query', 'response']" in out.stderr and "'question' and 'answer'" in out.stderr
