"""The shipped YAML configs (`examples/recipes/<domain>/{refine,train_full,train_lora,eval}.yaml`,
`examples/refine/*.yaml`): every file loads through the real `raft` parser of its command with every key taken, the
training files carry the paper's hyperparameters, the stages chain (refine's output is train's input, train's outputs
are eval's models), and the chain runs end to end: on a tiny model, under `accelerate launch` with the packaged
ZeRO-3 config, and on the embedded default model."""

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from raft_trainer.cli import eval as eval_command
from raft_trainer.cli import refine as refine_command
from raft_trainer.cli import train as train_command
from raft_trainer.cli.main import main as raft

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ["business_industry", "culture", "law_government", "science", "web"]  # the paper's five domains
STAGES = ["eval", "refine", "train_full", "train_lora"]
CONFIGS = sorted((ROOT / "examples").rglob("*.yaml"))
COMMANDS = {"refine": refine_command, "train": train_command, "eval": eval_command}


def command_of(path: Path) -> str:
    return "refine" if path.parent.name == "refine" else path.stem.split("_")[0]


def parse(path: Path, *flags: str):
    """The dataclasses `raft <command> --config path [flags]` builds, as the CLI builds them."""
    return COMMANDS[command_of(path)].make_parser().parse_args_and_config(args=["--config", str(path), *flags])


def test_one_config_per_domain_and_stage():
    assert sorted(p.name for p in (ROOT / "examples" / "recipes").iterdir()) == DOMAINS
    for domain in DOMAINS:
        assert sorted(p.stem for p in (ROOT / "examples" / "recipes" / domain).glob("*.yaml")) == STAGES


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "examples")))
def test_every_shipped_yaml_loads_through_the_real_parser(path, monkeypatch):
    """Every key of the file lands, with its value, in one of the command's config objects (TrlParser refuses an
    unknown key), and the local data files it names exist."""
    monkeypatch.chdir(ROOT)
    settings = yaml.safe_load(path.read_text())
    parsed = parse(path)
    for key, value in settings.items():
        owners = [config for config in parsed if hasattr(config, key)]
        assert owners, f"{path.name}: {key} reached no config"
        got = getattr(owners[0], key)
        if isinstance(value, list) and key == "datasets":
            continue
        if isinstance(got, list) and not isinstance(value, list):
            value = [value]  # a one-item list flag (report_to, lora_target_modules) written as a scalar
        assert got == value or str(got) == str(value), (key, got)
    for key in ("dataset_name", "domain_dataset"):
        name = settings.get(key, "")
        if name.startswith("examples/"):
            assert (ROOT / name).is_file(), name


@pytest.mark.parametrize("domain", DOMAINS)
def test_training_configs_carry_the_papers_hyperparameters_and_flags_override(domain, monkeypatch):
    monkeypatch.chdir(ROOT)
    folder = ROOT / "examples" / "recipes" / domain
    _, full, full_model, _ = parse(folder / "train_full.yaml")
    assert (full.num_train_epochs, full.learning_rate, full.weight_decay) == (3, 5e-6, 0.01)
    assert (full.distillation_topk, full.distillation_temperature, full.ema_beta) == (512, 1.5, 0.9)
    assert full.per_device_train_batch_size * full.gradient_accumulation_steps == 16  # the paper's global batch
    assert not full_model.use_peft
    _, lora, lora_model, _ = parse(folder / "train_lora.yaml", "--learning_rate", "2e-4", "--max_steps", "7")
    assert lora_model.use_peft and lora_model.lora_r == 16 and lora_model.lora_target_modules == "all-linear"
    assert (lora.learning_rate, lora.max_steps) == (2e-4, 7)  # a flag overrides the file


@pytest.mark.parametrize("domain", DOMAINS)
def test_the_stages_chain_and_the_bundled_data_is_usable(domain, monkeypatch):
    from raft_trainer.data import load_data
    from raft_trainer.qa_rows import read_rows

    monkeypatch.chdir(ROOT)
    folder = ROOT / "examples" / "recipes" / domain
    (refine,) = parse(folder / "refine.yaml", "--output_format", "plain")
    trained = {stage: parse(folder / f"train_{stage}.yaml") for stage in ("full", "lora")}
    (evaluation,) = parse(folder / "eval.yaml")
    for script_args, _, _, _ in trained.values():
        assert script_args.dataset_name == os.path.join(refine.output_dir, "refined.jsonl")
    assert evaluation.models == [f"{stage}={args[1].output_dir}" for stage, args in trained.items()]
    rows, skipped = read_rows(load_data(refine.dataset_name), refine)
    assert len(rows) == 24 and skipped == []


def test_a_mistyped_key_in_a_config_is_one_line_naming_it(tmp_path, capsys):
    bad = tmp_path / "train.yaml"
    bad.write_text((ROOT / "examples/recipes/science/train_lora.yaml").read_text() + "distilation_topk: 64\n")
    with pytest.raises(SystemExit) as exit_info:
        raft(["train", "--config", str(bad)])
    assert exit_info.value.code == 2
    assert "distilation_topk" in capsys.readouterr().err


def test_refine_train_eval_chain_runs_from_the_shipped_configs(tmp_path, tiny_model_dir, monkeypatch, capsys):
    """Stage 1, Stage 2 (LoRA) and the evaluation from the science configs, on a tiny model, outputs moved to tmp."""
    monkeypatch.chdir(ROOT)
    folder = "examples/recipes/science"
    raft(
        [
            "refine",
            "--config",
            f"{folder}/refine.yaml",
            "--rewrite_model",
            tiny_model_dir,
            "--output_dir",
            str(tmp_path / "refine"),
            "--rewrite_max_new_tokens",
            "8",
            "--fusion_max_new_tokens",
            "8",
        ]
    )
    rows = [json.loads(line) for line in (tmp_path / "refine" / "refined.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all("similarity" in row["provenance"] for row in rows)
    raft(
        [
            "train",
            "--config",
            f"{folder}/train_lora.yaml",
            "--model_name_or_path",
            tiny_model_dir,
            "--dataset_name",
            str(tmp_path / "refine" / "refined.jsonl"),
            "--max_steps",
            "1",
            "--gradient_accumulation_steps",
            "1",
            "--max_completion_length",
            "4",
            "--output_dir",
            str(tmp_path / "lora"),
            "--report_to",
            "none",
            "--save_strategy",
            "no",
        ]
    )
    assert "RAFT training done: 1 steps" in capsys.readouterr().out
    assert (tmp_path / "lora" / "adapter_model.safetensors").exists()
    raft(
        [
            "eval",
            "--config",
            f"{folder}/eval.yaml",
            "--models",
            f"lora={tmp_path / 'lora'}",
            "--base_model",
            tiny_model_dir,
            "--metrics",
            "domain",
            "--limit",
            "3",
            "--max_new_tokens",
            "4",
            "--plot",
            "false",
            "--output_dir",
            str(tmp_path / "eval"),
        ]
    )
    report = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    assert set(report["models"]) == {"base", "lora"} and report["sizes"]["domain"] == 3


@pytest.mark.distributed
@pytest.mark.timeout(600)
def test_raft_train_launches_a_shipped_config_with_the_packaged_zero3_config(tmp_path, tiny_model_dir):
    """A pip-installed user launches ZeRO-3 on two processes without the repository (run from an empty folder):
    `raft train --config ... --accelerate_config zero3 --num_processes 2`."""
    import subprocess

    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        *(sys.executable, "-m", "raft_trainer.cli.main", "train"),
        *("--config", str(ROOT / "examples/recipes/law_government/train_lora.yaml")),
        *("--accelerate_config", "zero3", "--num_processes", "2", "--mixed_precision", "no"),
        *(
            "--model_name_or_path",
            tiny_model_dir,
            "--dataset_name",
            str(ROOT / "examples/data/law_government_qa.jsonl"),
        ),
        *("--max_steps", "2", "--use_cpu", "true", "--gradient_accumulation_steps", "1"),
        *("--max_completion_length", "4", "--output_dir", str(tmp_path / "out"), "--report_to", "none"),
    ]
    out = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    assert "accelerate.commands.launch --config_file" in out.stderr and "deepspeed_zero3.yaml" in out.stderr
    assert "RAFT training done: 2 steps" in out.stdout
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    assert [log["step"] for log in history if "raft/lambda" in log] == [1, 2]
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_shipped_training_config_runs_on_the_embedded_default_model(tmp_path, monkeypatch, capsys):
    """As written the configs name no model: the embedded Gemma 3 270M base (no chat template: plain prompts)."""
    monkeypatch.chdir(ROOT)
    raft(
        [
            "train",
            "--config",
            "examples/recipes/law_government/train_full.yaml",
            "--dataset_name",
            "examples/data/law_government_qa.jsonl",
            "--max_steps",
            "1",
            "--gradient_accumulation_steps",
            "1",
            "--max_completion_length",
            "8",
            "--output_dir",
            str(tmp_path),
            "--report_to",
            "none",
            "--save_strategy",
            "no",
        ]
    )
    assert "RAFT training done: 1 steps" in capsys.readouterr().out
    assert (tmp_path / "model.safetensors").exists()
