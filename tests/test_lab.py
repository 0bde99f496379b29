"""`raft lab`: the smoke preset end to end through the CLI (every method, finite numbers, the report's shape), resume,
the shipped domains (split by entity, sources stated) and clear errors for bad settings and data. No outcome is
asserted here: the measured outcome is in docs/results.md."""

import json
import math
import os
import subprocess
import sys

import pytest

from raft_trainer.lab import LabConfig
from raft_trainer.lab.config import METHOD_ORDER
from raft_trainer.lab.domains import SHIPPED, read_qa_rows

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab") / "smoke"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "raft_trainer.cli.main", "lab", "--preset", "smoke", "--output_dir", str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=800)
    assert result.returncode == 0, result.stderr[-4000:]
    return out, result.stdout, command, env


def test_smoke_preset_reports_every_method_with_finite_numbers(smoke):
    out, stdout, _, _ = smoke
    report = json.loads((out / "lab_results.json").read_text())
    assert list(report["methods"]) == list(METHOD_ORDER)
    for name, entry in report["methods"].items():
        for key in ("domain_accuracy", "general_retention", "perplexity", "train_seconds"):
            assert set(entry[key]) == {"mean", "std", "per_seed"}, (name, key)
            assert len(entry[key]["per_seed"]) == 1 and math.isfinite(entry[key]["mean"]), (name, key)
    assert report["methods"]["base"]["general_retention"]["mean"] == pytest.approx(1.0)
    assert 0.0 <= report["teacher_reference_accuracy"] <= 1.0
    assert report["config"]["preset"] == "smoke" and report["sizes"]["test"] == 8
    assert "| raft |" in (out / "lab_results.md").read_text() and "| raft |" in stdout
    assert (out / "lab_tradeoff.png").stat().st_size > 0 and (out / "lab_curves.png").stat().st_size > 0
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    raft = next(r for r in runs if r["method"] == "raft")
    assert any("raft/lambda" in log for log in raft["log_history"])  # the curves come from the runs' logs
    refined = [json.loads(line) for line in (out / "refine" / "refined.jsonl").read_text().splitlines()]
    assert len(refined) == 16 and all("provenance" in r for r in refined)  # Stage 1 ran on the training rows


def test_a_lab_started_again_resumes_and_refuses_other_settings(smoke):
    out, _, command, env = smoke
    before = (out / "runs.jsonl").read_text()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=800)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "runs.jsonl").read_text() == before  # nothing trained again
    changed = subprocess.run([*command, "--learning_rate", "1e-4"], env=env, capture_output=True, text=True,
                             timeout=800)  # fmt: skip
    assert changed.returncode != 0 and "other settings (learning_rate)" in changed.stderr


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_domains_are_split_by_entity_with_sources(name):
    domain = SHIPPED[name]
    train, test = read_qa_rows(domain.train_file), read_qa_rows(domain.test_file)
    assert len(train) >= 50 and len(test) >= 30
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert all(r["aliases"] for r in train + test)
    raw = [json.loads(line) for line in open(domain.train_file, encoding="utf-8")]
    assert all(r["source"] and r["entity"] for r in raw)
    assert not {r["entity"] for r in raw} & {json.loads(line)["entity"] for line in open(domain.test_file)}
    assert all(any(a in r["answer"] for a in r["aliases"]) for r in train)  # the gold answer states the fact


def test_settings_are_checked():
    assert LabConfig().methods == ["base", "sft", "on_policy", "raft"]
    assert LabConfig(preset="full", methods="raft, sft").methods == ["sft", "raft"]
    assert LabConfig(preset="smoke", max_steps=5).max_steps == 5  # an option wins over its preset
    with pytest.raises(ValueError, match="Unknown or no methods"):
        LabConfig(methods=["sft", "grpo"])
    with pytest.raises(ValueError, match="domain_test_dataset"):
        LabConfig(domain_dataset="train.jsonl")
    with pytest.raises(ValueError, match="Unknown preset"):
        LabConfig(preset="fast")


def test_bad_domain_files_give_one_clear_error(tmp_path):
    (tmp_path / "cols.jsonl").write_text('{"q": "What?", "a": "That."}\n')
    with pytest.raises(ValueError, match=r"needs question, answer .* missing \['answer', 'question'\]"):
        read_qa_rows(str(tmp_path / "cols.jsonl"))
    (tmp_path / "blank.jsonl").write_text('{"question": "What?", "answer": " "}\n')
    with pytest.raises(ValueError, match="row 0: question and answer must be non-empty"):
        read_qa_rows(str(tmp_path / "blank.jsonl"))
    with pytest.raises(ValueError, match="Cannot read the domain file"):
        read_qa_rows(str(tmp_path / "missing.jsonl"))


def test_a_lab_resumes_when_the_last_line_of_runs_jsonl_was_cut(tmp_path):
    """A kill while `runs.jsonl` was written leaves a cut last line: it is dropped (refine's `AppendOnlyJsonl`
    reader) and the file cut back, so the lab resumes and redoes that run instead of failing on "Unterminated
    string"."""
    from raft_trainer.lab.domains import resolve_domain
    from raft_trainer.lab.runner import _load_runs

    config = LabConfig(preset="smoke", output_dir=str(tmp_path))
    domain = resolve_domain(config.domain, config.domain_dataset, config.domain_test_dataset, config.case_sensitive)
    assert _load_runs(tmp_path, config, "tiny", domain) == []  # a new lab: its settings are written
    finished = json.dumps({"method": "sft", "seed": 0, "scores": {"domain_accuracy": 0.5}}, ensure_ascii=False) + "\n"
    (tmp_path / "runs.jsonl").write_text(finished + '{"method": "raft", "seed": 0, "scores": {"doma')
    runs = _load_runs(tmp_path, config, "tiny", domain)
    assert [(r["method"], r["seed"]) for r in runs] == [("sft", 0)]
    assert (tmp_path / "runs.jsonl").read_text() == finished  # the next run is appended on a line of its own
