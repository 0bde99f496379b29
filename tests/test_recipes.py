"""Per-domain recipes and examples/train_raft.py: every recipe parses with the paper's hyperparameters, its bundled
data is usable, and the script runs one process, under `accelerate launch` with the shipped ZeRO-3 config, and on the
embedded default model."""

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from raft_trainer.recipe import gradient_accumulation_for, load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "examples" / "recipes").glob("*.yaml"))
DOMAINS = ["business_industry", "culture", "law_government", "science", "web"]  # the paper's five domains


def train_raft():
    spec = importlib.util.spec_from_file_location("train_raft", ROOT / "examples" / "train_raft.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_recipe_per_domain():
    assert [path.stem for path in RECIPES] == DOMAINS


@pytest.mark.parametrize("world_size,accumulation", [("1", 8), ("8", 1)])
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses_with_the_papers_hyperparameters(recipe, world_size, accumulation, monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", world_size)
    parse = train_raft().parse
    _, _, _, full, model_args = parse(["--config", str(recipe), "--output_dir", str(tmp_path)])
    assert (full.num_train_epochs, full.learning_rate, full.weight_decay) == (3, 5e-6, 0.01)
    assert (full.distillation_topk, full.distillation_temperature, full.ema_beta) == (512, 1.5, 0.9)
    assert full.per_device_train_batch_size * int(world_size) * full.gradient_accumulation_steps == 16
    assert full.gradient_accumulation_steps == accumulation and not model_args.use_peft
    _, _, _, lora, lora_model = parse(["--config", str(recipe), "--variant", "lora", "--learning_rate", "2e-4"])
    assert lora_model.use_peft and lora_model.lora_r == 16 and lora.learning_rate == 2e-4  # flags override


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_data_is_bundled_and_usable(recipe):
    from raft_trainer.data import load_data
    from raft_trainer.refine.config import RefineConfig
    from raft_trainer.refine.inputs import read_rows

    loaded = load_recipe(recipe)
    data = {**loaded.data, "dataset_name": loaded.resolve_path(loaded.data["dataset_name"]), "output_format": "plain"}
    rows, skipped = read_rows(load_data(data["dataset_name"]), RefineConfig(**data))
    assert len(rows) == 24 and skipped == []


def test_bad_recipes_are_refused_with_the_key_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  learning_rat: 1e-5\n")
    with pytest.raises(ValueError, match="learning_rat"):
        load_recipe(bad)
    bad.write_text("trian: {}\n")
    with pytest.raises(ValueError, match="trian"):
        load_recipe(bad)
    bad.write_text("variants: {full: {}}\n")
    with pytest.raises(ValueError, match="no variant 'lora'"):
        load_recipe(bad).train_settings("lora")
    with pytest.raises(ValueError, match="not a multiple"):
        gradient_accumulation_for(16, 3, 2)


def test_train_raft_refines_then_trains_and_reuses_the_refined_file(tmp_path, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = ["--config", "examples/recipes/science.yaml", "--model_name_or_path", tiny_model_dir, "--max_steps", "1",
            "--max_completion_length", "4", "--output_dir", str(tmp_path), "--report_to", "none",
            "--save_strategy", "no"]  # fmt: skip
    train_raft().main(args)
    refined = tmp_path / "refined" / "refined.jsonl"
    rows = [json.loads(line) for line in refined.read_text().splitlines()]
    assert len(rows) == 24 and all("similarity" in row["provenance"] for row in rows)
    assert "RAFT training done: 1 steps" in capsys.readouterr().out
    before = refined.stat().st_mtime_ns
    train_raft().main(args)  # a second run (or another rank) finds Stage 1 done
    assert refined.stat().st_mtime_ns == before


@pytest.mark.distributed
@pytest.mark.timeout(600)
def test_accelerate_launch_with_the_shipped_zero3_config(tmp_path, tiny_model_dir):
    import subprocess

    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               "raft_trainer/accelerate_configs/deepspeed_zero3.yaml", "--num_processes", "2", "--mixed_precision", "no",
               "examples/train_raft.py", "--config", "examples/recipes/law_government.yaml", "--variant", "lora",
               "--skip_refine", "--model_name_or_path", tiny_model_dir, "--max_steps", "2", "--use_cpu", "true",
               "--max_completion_length", "4", "--output_dir", str(tmp_path), "--report_to", "none"]  # fmt: skip
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    assert "RAFT training done: 2 steps" in out.stdout
    history = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    assert [log["step"] for log in history if "raft/lambda" in log] == [1, 2]
    assert (tmp_path / "adapter_model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_recipe_runs_on_the_embedded_default_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    train_raft().main(["--config", "examples/recipes/law_government.yaml", "--skip_refine", "--max_steps", "1",
                       "--max_completion_length", "8", "--output_dir", str(tmp_path), "--report_to", "none",
                       "--save_strategy", "no", "--gradient_accumulation_steps", "1"])  # fmt: skip
    assert "RAFT training done: 1 steps" in capsys.readouterr().out
    first = json.loads((tmp_path / "train_rows.jsonl").read_text().splitlines()[0])
    assert isinstance(first["prompt"], str)  # Gemma 3 270M base has no chat template: plain prompts


@pytest.mark.distributed
@pytest.mark.timeout(600)
def test_raft_train_launches_accelerate_with_a_packaged_config(tmp_path, tiny_model_dir, plain_dataset):
    """A pip-installed user launches ZeRO-3 on two processes without the repository: `--accelerate_config zero3`."""
    import subprocess

    data = tmp_path / "train.jsonl"
    plain_dataset.to_json(data)
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "raft_trainer.cli.main", "train", "--accelerate_config", "zero3",
               "--num_processes", "2", "--mixed_precision", "no", "--model_name_or_path", tiny_model_dir,
               "--dataset_name", str(data), "--max_steps", "2", "--use_cpu", "true", "--per_device_train_batch_size", "2",
               "--max_completion_length", "4", "--logging_steps", "1", "--output_dir", str(tmp_path / "out"), "--report_to", "none"]  # fmt: skip
    out = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    assert "accelerate.commands.launch --config_file" in out.stderr and "deepspeed_zero3.yaml" in out.stderr
    assert "RAFT training done: 2 steps" in out.stdout
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    assert [log["step"] for log in history if "raft/lambda" in log] == [1, 2]
