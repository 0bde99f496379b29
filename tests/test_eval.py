"""`raft eval`: each metric on hand-made cases with known answers, retention and drift of an identical and a damaged
checkpoint, judges served by a real `transformers serve`, the forgetting monitor in a RAFTTrainer run, and the CLI."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from refine_helpers import ScriptedBackend

from raft_trainer import MissingPackageError
from raft_trainer.backends import BackendPool
from raft_trainer.eval import EvalConfig, ForgettingMonitorCallback, evaluate
from raft_trainer.eval.domain import exact_match, majority_vote, parse_verdict, token_f1
from raft_trainer.eval.likelihood import masked_mean_kl
from raft_trainer.eval.report import relative_gain, retention


def test_exact_match_and_f1_on_known_cases():
    assert exact_match("The Paris.", "paris") == 1.0 and exact_match("Paris, France", "Paris") == 0.0
    assert token_f1("Paris", "Paris") == 1.0 and token_f1("Lyon", "Paris") == 0.0
    assert token_f1("capital is Paris", "the capital of France is Paris") == pytest.approx(2 * 1 * 0.6 / 1.6)


def test_judge_verdicts_and_majority_vote():
    assert [parse_verdict(t) for t in ["yes", "No.", "It is incorrect", "unsure"]] == [True, False, False, None]
    assert majority_vote([True, True, False]) is True and majority_vote([True, False]) is False
    assert majority_vote([None, True]) is True and majority_vote([None, None]) is None


def test_kl_is_zero_for_equal_logits_and_matches_a_hand_computation():
    logits = torch.randn(2, 3, 5)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_mean_kl(logits, logits, mask).item() == pytest.approx(0.0, abs=1e-7)
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])
    expected = (p * (p / q).log()).sum().item()
    value = masked_mean_kl(p.log().view(1, 1, 2), q.log().view(1, 1, 2), torch.ones(1, 1)).item()
    assert value == pytest.approx(expected, rel=1e-6)


def test_retention_and_gain():
    assert retention(0.5, 0.5) == 1.0 and retention(8.0, 10.0, lower_is_better=True) == 1.25
    assert relative_gain(0.3, 0.2) == pytest.approx(0.5) and relative_gain(0.3, 0.0) is None


@pytest.fixture(scope="module")
def checkpoints(tiny_model_dir, tmp_path_factory):
    """An identical copy of the tiny base model and a damaged one (noise on every weight)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("checkpoints")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for name, scale in (("same", 0.0), ("damaged", 0.5)):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        torch.manual_seed(1)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(scale * torch.randn_like(parameter))
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return {"same": str(root / "same"), "damaged": str(root / "damaged")}


@pytest.fixture(scope="module")
def known_probes(tiny_model_dir, tmp_path_factory):
    """Probes whose expected answers are the base model's own greedy answers: the base scores 1.0 by construction."""
    from raft_trainer.backends import SamplingSettings
    from raft_trainer.backends.local import TransformersBackend
    from raft_trainer.eval.probes import probe_prompt

    questions = [
        "What is the capital of France ?",
        "What is two plus two ?",
        "Which gas do plants absorb ?",
        "Who wrote the contract law ?",
    ]
    replies = TransformersBackend(tiny_model_dir).generate(
        [probe_prompt(q) for q in questions], SamplingSettings(12, stop=("\n",))
    )
    path = tmp_path_factory.mktemp("probes") / "probes.jsonl"
    path.write_text(
        "".join(
            json.dumps({"question": q, "answer": r.text.split("\n")[0] or "?", "category": "t"}) + "\n"
            for q, r in zip(questions, replies)
        )
    )
    return str(path)


def test_identical_checkpoint_retains_everything_and_a_damaged_one_less(
    tmp_path, tiny_model_dir, checkpoints, known_probes
):
    config = EvalConfig(
        base_model=tiny_model_dir,
        models=[f"same={checkpoints['same']}", f"damaged={checkpoints['damaged']}"],
        metrics=["probes", "perplexity", "drift"],
        probes_file=known_probes,
        output_dir=str(tmp_path),
    )
    report = evaluate(config)
    base, same, damaged = (report["models"][n] for n in ("base", "same", "damaged"))
    assert base["scores"]["probe_accuracy"] == 1.0
    assert same["scores"]["drift_kl"] == pytest.approx(0.0, abs=1e-6)
    assert (
        same["retention"]["perplexity"] == pytest.approx(1.0, rel=1e-6) and same["retention"]["probe_accuracy"] == 1.0
    )
    assert damaged["scores"]["drift_kl"] > 0.01
    assert damaged["retention"]["perplexity"] < 1.0 and damaged["retention"]["mean"] < same["retention"]["mean"]
    saved = json.loads((tmp_path / "eval_results.json").read_text())
    assert saved["models"]["damaged"]["scores"]["drift_kl"] == pytest.approx(damaged["scores"]["drift_kl"])
    table = (tmp_path / "eval_results.md").read_text()
    assert table.startswith("| model |") and "| damaged |" in table


def test_domain_scores_with_judges_served_by_transformers_serve(tmp_path, tiny_model_dir, served_model):
    from datasets import Dataset

    data = tmp_path / "domain.jsonl"
    Dataset.from_dict(
        {
            "question": ["What is two plus two ?", "What is the capital of France ?"],
            "answer": ["Two plus two is four .", "The capital of France is Paris ."],
        }
    ).to_json(str(data))
    config = EvalConfig(
        base_model=tiny_model_dir,
        metrics=["domain"],
        domain_dataset=str(data),
        output_format="plain",
        judge_models=[served_model, "yes-judge", "yes-judge-2"],
        stop_sequences=[],
        max_new_tokens=6,
        output_dir=str(tmp_path / "out"),
        plot=False,
    )
    backends = BackendPool(
        **{
            "yes-judge": ScriptedBackend("yes-judge", lambda p: "Yes."),
            "yes-judge-2": ScriptedBackend("yes-judge-2", lambda p: "yes"),
        }
    )
    report = evaluate(config, backends=backends)
    scores = report["models"]["base"]["scores"]
    assert report["judges"] == [served_model, "yes-judge", "yes-judge-2"]
    # The tiny served model cannot say yes or no (its vocabulary has neither): two readable yes votes win.
    assert scores["domain_judge_accuracy"] == 1.0 and scores["domain_judge_unreadable"] == 0
    assert 0.0 <= scores["domain_f1"] <= 1.0 and scores["domain_exact_match"] == 0.0


def test_forgetting_monitor_logs_during_raft_training(tmp_path, tiny_model_dir, plain_dataset):
    from raft_trainer import RAFTConfig, RAFTTrainer

    args = RAFTConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=2,
        bf16=False,
        learning_rate=1e-2,
        max_completion_length=4,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
    )
    trainer = RAFTTrainer(tiny_model_dir, args=args, train_dataset=plain_dataset)
    trainer.add_callback(ForgettingMonitorCallback(trainer, every_n_steps=1, num_probes=3))
    trainer.train()
    logged = [log for log in trainer.state.log_history if "forgetting/drift_kl" in log]
    assert [log["step"] for log in logged] == [1, 2]
    assert all("loss" in log and "raft/lambda" in log for log in logged)  # one log line per step, loss included
    assert all(log["forgetting/drift_kl"] > 0 and 0 <= log["forgetting/probe_accuracy"] <= 1 for log in logged)
    assert trainer.processing_class.padding_side == "right"


def test_cli_writes_json_markdown_and_plot(tmp_path, tiny_model_dir, checkpoints, capsys):
    pytest.importorskip("matplotlib")
    from raft_trainer.cli.main import main

    main(
        [
            "eval",
            "--base_model",
            tiny_model_dir,
            "--models",
            checkpoints["damaged"],
            "--metrics",
            "perplexity",
            "drift",
            "--output_dir",
            str(tmp_path),
        ]
    )
    assert (tmp_path / "eval_tradeoff.png").stat().st_size > 1000
    assert "| damaged |" in capsys.readouterr().out


def test_domain_accuracy_counts_the_answer_or_an_alias_as_a_whole_word(tmp_path):
    from raft_trainer.eval.metrics import domain_scores
    from raft_trainer.eval.runner import EvalData

    rows = [
        {"question": "What is the capital of Kenya?", "answer": "Per the registry, Nairobi.", "aliases": ["Nairobi"]},
        {"question": "What is the symbol of sodium?", "answer": "Na", "aliases": []},
        {"question": "Who wrote Emma?", "answer": "Jane Austen", "aliases": ["Austen"]},
    ]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    replies = {"Kenya": "It is Nairobi.", "sodium": "na, sodium", "Emma": "Austenite"}
    model = ScriptedBackend("m", lambda p: next(v for k, v in replies.items() if k in p))
    for case_sensitive, expected in ((False, 2 / 3), (True, 1 / 3)):
        config = EvalConfig(domain_dataset=str(path), output_format="plain", case_sensitive=case_sensitive)
        scores = domain_scores(model, EvalData.load(config), [], config)
        assert scores["domain_accuracy"] == pytest.approx(expected)  # "Austenite" is not "Austen"


def test_a_reasoning_trace_earns_no_credit_and_costs_none(tmp_path):
    """Every domain metric, judge verdict, probe and IFEval response is read after the reply's reasoning blocks
    (`strip_reasoning`, as lm-eval does): a name only in the trace earns nothing; a right answer after one counts."""
    from types import SimpleNamespace

    from refine_helpers import field_of

    from raft_trainer.eval.metrics import ScoringContext, domain_scores, ifeval_scores, probe_hits
    from raft_trainer.eval.runner import EvalData

    rows = [{"question": "What is the capital of Kenya?", "answer": "Nairobi"},
            {"question": "Who wrote Emma?", "answer": "Jane Austen"}]  # fmt: skip
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    replies = {"Kenya": "<think>\nMombasa? No, the capital.\n</think>\n\nNairobi",
               "Emma": "<thinking>Jane Austen, or was it a Brontë?</thinking> Charlotte Brontë"}  # fmt: skip
    model = ScriptedBackend("m", lambda p: next(v for k, v in replies.items() if k in p))

    def judge(prompt):  # thinks aloud with a "yes" before its verdict
        right = field_of(prompt, "Reference answer") in field_of(prompt, "Candidate answer")
        return "<think>Is the answer yes or no?</think> " + ("yes" if right else "no")

    config = EvalConfig(domain_dataset=str(path), output_format="plain")
    scores = domain_scores(model, EvalData.load(config), [ScriptedBackend("j", judge)], config)
    assert scores["domain_accuracy"] == 0.5 and scores["domain_exact_match"] == 0.5  # Nairobi: 1.0, Brontë: 0.0
    assert scores["domain_judge_accuracy"] == 0.5 and scores["domain_f1"] == pytest.approx(0.5)
    probes = [{"question": "What is the capital of France?", "answer": "Paris"},
              {"question": "What is 3 + 5?", "answer": "8"}]  # fmt: skip
    probe_replies = {"France": "<think>\nLyon? No.\n</think>\nParis", "3 + 5": "<think> 8? </think> 9"}
    prober = ScriptedBackend("p", lambda p: next(v for k, v in probe_replies.items() if k in p.rsplit("Q: ", 1)[1]))
    assert probe_hits(prober, probes) == [True, False]  # not "<think>" as the first line; "8" only in the trace
    ifeval = [{"prompt": "Answer without commas.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}]
    writer = ScriptedBackend("w", lambda p: "<reasoning>Hm, no commas, right?</reasoning>\nNo commas here.")
    context = ScoringContext(writer, writer, SimpleNamespace(ifeval=ifeval), SimpleNamespace(ifeval_max_new_tokens=8))
    assert ifeval_scores(context)["ifeval_prompt_level_strict_acc"] == 1.0


def test_eval_inputs_and_names_are_checked_before_any_model_loads(tmp_path):
    from raft_trainer.backends import BackendPool
    from raft_trainer.eval.runner import EvalData

    class NoModels(BackendPool):
        def get(self, spec):
            raise AssertionError(f"a model ({spec}) was loaded before the inputs were checked")

    domain = tmp_path / "qa.jsonl"
    domain.write_text(json.dumps({"question": "Q?", "answer": "A."}) + "\n")
    common = dict(domain_dataset=str(domain), output_dir=str(tmp_path / "out"), models=["sft=a", "raft=b"])
    with pytest.raises(ValueError, match=r"--baseline 'stf' is not among the models \['base', 'sft', 'raft'\]"):
        evaluate(EvalConfig(**common, baseline="stf"), backends=NoModels())
    probes = tmp_path / "probes.jsonl"
    probes.write_text(json.dumps({"question": "Q?", "answer": "A"}) + "\n" + json.dumps({"question": "Q2?"}) + "\n")
    with pytest.raises(ValueError, match=r"probes\.jsonl, row 2: a probe needs non-empty 'question' and 'answer'"):
        evaluate(EvalConfig(**common, probes_file=str(probes)), backends=NoModels())
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match=r"empty\.txt' has no paragraphs"):
        evaluate(EvalConfig(**common, general_text_file=str(tmp_path / "empty.txt")), backends=NoModels())
    # A domain-only run reads neither the probes nor the general text.
    data = EvalData.load(
        EvalConfig(
            **common, metrics=["domain"], probes_file=str(probes), general_text_file=str(tmp_path / "empty.txt")
        )
    )
    assert len(data.domain_rows) == 1 and data.probes == [] and data.general_text == []


def test_the_report_is_written_as_each_model_finishes(tmp_path):
    from raft_trainer.backends import BackendError, BackendPool

    domain = tmp_path / "qa.jsonl"
    domain.write_text(json.dumps({"question": "Capital of Kenya?", "answer": "Nairobi"}) + "\n")
    backends = BackendPool(
        base=ScriptedBackend("base", lambda p: "Nairobi"),
        sft=ScriptedBackend("sft", lambda p: "Nairobi", fail_from_call=1),
    )
    config = EvalConfig(
        base_model="base",
        models=["sft=sft"],
        metrics=["domain"],
        domain_dataset=str(domain),
        output_format="plain",
        output_dir=str(tmp_path / "out"),
        plot=False,
    )
    with pytest.raises(BackendError):
        evaluate(config, backends=backends)
    saved = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert saved["complete"] is False and list(saved["models"]) == ["base"]
    assert saved["models"]["base"]["scores"]["domain_accuracy"] == 1.0


@pytest.mark.parametrize(
    "row, problem",
    [
        ({"prompt": "Write.", "instruction_id_list": "length_constraints:number_words"}, "not a list of strings"),
        ({"prompt": "Write.", "instruction_id_list": ["a", "b"], "kwargs": [{}]}, "one object per instruction"),
        ({"instruction_id_list": []}, "no 'prompt' string"),
    ],
)
def test_malformed_ifeval_rows_are_named_before_scoring(tmp_path, row, problem):
    from raft_trainer.eval.runner import EvalData

    path = tmp_path / "ifeval.jsonl"
    good = {"prompt": "Say hi.", "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [None]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=f"ifeval.jsonl, row 2: .*{problem}"):
        EvalData.load(EvalConfig(metrics=["ifeval"], ifeval_dataset=str(path)))


def test_a_metric_registered_in_one_place_reaches_the_json_and_the_table(tmp_path, monkeypatch):
    """The registry drives the runner and the report: one `register(Metric(...))` adds a selectable metric whose
    score lands in the JSON, whose direction decides its retention, and which gets its own table columns."""
    from raft_trainer.backends import BackendPool, SamplingSettings
    from raft_trainer.eval import metrics
    from raft_trainer.eval.report import markdown_table

    monkeypatch.setattr(metrics, "METRICS", dict(metrics.METRICS))  # registered for this test only

    def reply_chars(context):  # a real measurement: mean reply length on the domain questions
        replies = context.model.generate([r.prompt for r in context.data.domain_rows], SamplingSettings(8))
        return {"reply_chars": sum(len(r.text) for r in replies) / len(replies)}

    metrics.register(metrics.Metric("reply_length", reply_chars, retained={"reply_chars": False}))
    domain = tmp_path / "qa.jsonl"
    domain.write_text(json.dumps({"question": "Capital of Kenya?", "answer": "Nairobi"}) + "\n")
    backends = BackendPool(
        base=ScriptedBackend("base", lambda p: "Nairobi"), sft=ScriptedBackend("sft", lambda p: "It is Nairobi.")
    )
    config = EvalConfig(
        base_model="base",
        models=["sft=sft"],
        metrics=["domain", "reply_length"],
        domain_dataset=str(domain),
        output_format="plain",
        output_dir=str(tmp_path),
        plot=False,
    )
    report = evaluate(config, backends=backends)
    saved = json.loads((tmp_path / "eval_results.json").read_text())
    assert saved["models"]["sft"]["scores"]["reply_chars"] == 14.0
    assert saved["models"]["sft"]["retention"] == {"reply_chars": 0.5, "mean": 0.5}  # lower is better: 7 / 14
    assert (
        "retention reply_chars" in markdown_table(report)
        and "reply_chars" in (tmp_path / "eval_results.md").read_text()
    )
    with pytest.raises(ValueError, match="Unknown metrics"):
        EvalConfig(metrics=["reply_lenght"])


def test_eval_results_reach_tensorboard_and_the_model_card(tmp_path):
    """`--report_to tensorboard` logs every score, retention and gain as `<model>/<group>/<key>`; a checkpoint whose
    model card was written by RAFTTrainer gets the evaluation section (replaced, not repeated, on a second run)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from raft_trainer.backends import BackendPool

    checkpoint = tmp_path / "raft"
    checkpoint.mkdir()
    (checkpoint / "README.md").write_text(
        "# raft\n\n## RAFT settings\n\n| field | value |\n\n### Framework versions\n"
    )
    domain = tmp_path / "qa.jsonl"
    domain.write_text(json.dumps({"question": "Capital of Kenya?", "answer": "Nairobi"}) + "\n")
    for _ in range(2):
        backends = BackendPool(
            base=ScriptedBackend("base", lambda p: "Lagos"),
            **{str(checkpoint): ScriptedBackend("raft", lambda p: "Nairobi")},
        )
        config = EvalConfig(
            base_model="base",
            models=[f"raft={checkpoint}"],
            metrics=["domain"],
            domain_dataset=str(domain),
            output_format="plain",
            output_dir=str(tmp_path / "out"),
            plot=False,
            report_to=["tensorboard"],
        )
        evaluate(config, backends=backends)
    events = EventAccumulator(str(tmp_path / "out" / "runs"))
    events.Reload()
    assert events.Scalars("raft/scores/domain_accuracy")[-1].value == 1.0
    assert events.Scalars("base/scores/domain_accuracy")[-1].value == 0.0
    card = (checkpoint / "README.md").read_text()
    assert card.count("## Evaluation (raft eval)") == 1 and "### Framework versions" in card
    section = card.split("## Evaluation (raft eval)")[1]
    assert "| base | 0 |" in section and "| raft | 1 |" in section
    with pytest.raises(ValueError, match=r"unknown tracker\(s\) \['tensorbord'\]"):
        EvalConfig(report_to=["tensorbord"])


def test_lm_eval_bridge_runs_a_local_task_offline_and_joins_the_retention_table(tmp_path, tiny_model_dir):
    """`--lm_eval_tasks` with a task from a local YAML and a local data file (no hub): lm-eval's own
    `simple_evaluate` scores the base and a checkpoint, and the score enters retention (same weights: 1.0)."""
    import yaml

    data = tmp_path / "mc.jsonl"
    rows = [
        {"question": "What is the capital of France ?", "choices": ["Paris", "Rome"], "label": 0},
        {"question": "What is two plus two ?", "choices": ["five", "four"], "label": 1},
        {"question": "Which gas do plants absorb ?", "choices": ["carbon dioxide", "helium"], "label": 0},
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    task = {
        "task": "raft_tiny_mc",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "label",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }
    (tasks / "raft_tiny_mc.yaml").write_text(yaml.safe_dump(task))
    config = EvalConfig(
        base_model=tiny_model_dir,
        models=[f"same={tiny_model_dir}"],
        metrics=[],
        lm_eval_tasks=["raft_tiny_mc"],
        lm_eval_include_path=str(tasks),
        output_dir=str(tmp_path / "out"),
        plot=False,
    )
    assert config.metrics == ["lm_eval"]
    report = evaluate(config)
    for name in ("base", "same"):
        accuracy = report["models"][name]["scores"]["lm_eval/raft_tiny_mc/acc"]
        assert accuracy in (0.0, 1 / 3, 2 / 3, 1.0)
    assert report["models"]["same"]["retention"]["lm_eval/raft_tiny_mc/acc"] in (1.0, None)  # None: base scored 0

    # --lm_eval_model: lm-eval's own model type loads the checkpoint from its path (hf here; vllm on a GPU machine)
    config.lm_eval_model, config.lm_eval_model_args, config.output_dir = "hf", "device=cpu", str(tmp_path / "out_hf")
    by_path = evaluate(config)
    for name in ("base", "same"):
        key = "lm_eval/raft_tiny_mc/acc"
        assert by_path["models"][name]["scores"][key] == report["models"][name]["scores"][key]
    if importlib.util.find_spec("vllm") is None:  # refused before any model loads
        with pytest.raises(
            MissingPackageError, match="--lm_eval_model vllm needs the package 'vllm': pip install vllm"
        ):
            EvalConfig(lm_eval_tasks=["raft_tiny_mc"], lm_eval_model="vllm")


def test_judged_general_questions_by_majority_of_judges(tmp_path):
    """`--metrics general_judged` (the paper's LLM-judged general QA role): each model answers the general
    questions zero-shot, the judges compare with the reference, the majority decides, and the score enters retention."""
    import re

    from raft_trainer.backends import BackendPool

    qa = tmp_path / "general.jsonl"
    qa.write_text(
        "".join(
            json.dumps({"question": q, "answer": a}) + "\n"
            for q, a in [("Capital of France?", "Paris"), ("Two plus two?", "four"), ("Largest ocean?", "Pacific")]
        )
    )

    def judge(prompt):  # correct when the candidate contains the reference; a third judge that cannot decide
        reference = re.search(r"Reference answer: (.*)\n", prompt).group(1)
        candidate = re.search(r"Candidate answer: (.*)\n", prompt).group(1)
        return "yes" if reference.lower() in candidate.lower() else "no"

    answers = {
        "base": {"France": "Paris.", "plus": "It is four.", "ocean": "The Pacific."},
        "sft": {"France": "Paris."},
    }

    def model(name):
        return lambda p: next((a for key, a in answers[name].items() if key in p), "I do not know.")

    backends = BackendPool(
        base=ScriptedBackend("base", model("base")),
        sft=ScriptedBackend("sft", model("sft")),
        j1=ScriptedBackend("j1", judge),
        j2=ScriptedBackend("j2", judge),
        j3=ScriptedBackend("j3", lambda p: "maybe"),
    )
    config = EvalConfig(
        base_model="base",
        models=["sft=sft"],
        metrics=["general_judged"],
        judge_models=["j1", "j2", "j3"],
        general_qa_file=str(qa),
        output_format="plain",
        output_dir=str(tmp_path),
        plot=False,
    )
    report = evaluate(config, backends=backends)
    assert report["models"]["base"]["scores"]["general_judge_accuracy"] == 1.0
    assert report["models"]["sft"]["scores"]["general_judge_accuracy"] == pytest.approx(1 / 3)
    assert report["models"]["sft"]["retention"]["general_judge_accuracy"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="general_judged needs judges"):
        evaluate(EvalConfig(metrics=["general_judged"], output_dir=str(tmp_path)), backends=backends)
