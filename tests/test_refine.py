"""Stage 1 (`raft refine`): inputs and bad rows, the real MiniLM filter, fusion with judges, the files written,
resuming, backend failures, the CLI, and training on the result."""

from __future__ import annotations

import json

import pytest
from refine_helpers import ScriptedBackend, field_of

from raft_trainer.backends import BackendError, BackendPool
from raft_trainer.prompt_files import load_prompt
from raft_trainer.qa_rows import read_rows
from raft_trainer.refine import RefineConfig, refine
from raft_trainer.refine.fusion import parse_judge_score
from raft_trainer.refine.store import AppendOnlyJsonl

QA = [
    ("What is the capital of France?", "The capital of France is Paris, its largest city."),
    ("Which gas do plants absorb?", "Plants absorb carbon dioxide from the air for photosynthesis."),
    ("How many legs does a spider have?", "A spider has eight legs, two more than an insect."),
    ("What is the boiling point of water at sea level?", "Water boils at 100 degrees Celsius at sea level."),
    ("Who wrote Hamlet?", "William Shakespeare wrote the play Hamlet around 1600."),
]


@pytest.fixture(scope="module")
def minilm():
    from raft_trainer.refine.similarity import SemanticFilter

    return SemanticFilter(threshold=0.8)


def qa_dataset(rows=QA):
    from datasets import Dataset

    return Dataset.from_dict({"id": [f"q{i}" for i in range(len(rows))], "question": [q for q, _ in rows],
                              "answer": [a for _, a in rows]})  # fmt: skip


def paraphrase(prompt):
    """A rewrite that keeps the facts (high similarity to the gold answer)."""
    return "In short: " + field_of(prompt, "Reference answer")


def pool(
    rewrite=paraphrase, fuse=lambda p: field_of(p, "Draft answer") + " Indeed.", judges=(lambda p: "0.9",), **fail
):
    backends = {"rewriter": ScriptedBackend("rewriter", rewrite, fail.get("rewriter")),
                "fuser": ScriptedBackend("fuser", fuse, fail.get("fuser"))}  # fmt: skip
    backends.update({f"judge{i}": ScriptedBackend(f"judge{i}", j) for i, j in enumerate(judges)})
    return BackendPool(**backends)


def config(tmp_path, **overrides):
    judges = [f"judge{i}" for i in range(overrides.pop("num_judges", 1))]
    defaults = dict(output_dir=str(tmp_path / "refined"), rewrite_model="rewriter", fusion_model="fuser",
                    judge_models=judges, batch_size=2)  # fmt: skip
    return RefineConfig(**{**defaults, **overrides})


def read_jsonl(path):
    return [json.loads(line) for line in open(path)]


@pytest.mark.parametrize(
    "reply, score",
    [
        (" 0.25 \n", 0.25), ("I would say 9/10.", 0.9), ("80%", 0.8), ('{"score": 0.75}', 0.75),
        ("Score (0 to 1): 0.8", 0.8),  # the prompt's own cue echoed back: its "0" is not the score
        ("Score: 0.2. On reflection, the final score is 0.9", 0.9),  # the last score statement counts
        ("<think>Is 0.1 fair? The candidate is right.</think>\nScore: 0.9", 0.9),  # reasoning removed
        ("<think>still thinking about 0.3", None),  # an unclosed reasoning block holds no answer
        ("1. It is correct.\n2. It is complete.", None),  # a numbered list is not a score
        ("On a 0 to 1 scale, 0.8", None),  # several numbers, no score statement: ambiguous
        ("", None), ("great", None), ("1.5", None), ("-0.2", None), ("Score: 7", None),  # out of range: rejected
        ('{"score": true}', None), ('{"verdict": "good"}', None),
    ],
)  # fmt: skip
def test_judge_replies_are_read_by_one_documented_rule(reply, score):
    assert parse_judge_score(reply) == score


def test_an_echoed_score_cue_stops_fusion_at_the_stop_score(tmp_path, minilm):
    """End to end: a judge that repeats the prompt's cue "Score (0 to 1): 0.9" is read as 0.9, so fusion stops."""
    backends = pool(judges=(lambda p: "Score (0 to 1): 0.9",))
    refine(config(tmp_path, fusion_rounds=3), qa_dataset(QA[:1]), backends=backends, semantic_filter=minilm)
    [row] = read_jsonl(tmp_path / "refined" / "refined.jsonl")
    assert row["provenance"]["best_score"] == 0.9 and row["provenance"]["fusion_rounds"] == 1


@pytest.mark.parametrize("retries, recorded", [(1, [0.9]), (0, [None])])
def test_an_unreadable_judge_reply_is_asked_again(tmp_path, minilm, retries, recorded):
    replies = iter(["Hmm, let me think about it.", "0.9"])
    backends = pool(judges=(lambda p: next(replies),))
    refine(config(tmp_path, judge_retries=retries, fusion_rounds=1), qa_dataset(QA[:1]), backends=backends,
           semantic_filter=minilm)  # fmt: skip
    [row] = read_jsonl(tmp_path / "refined" / "refined.jsonl")
    assert row["provenance"]["candidates"][0]["scores"] == recorded
    calls = backends.get("judge0").calls
    assert len(calls) == 1 + retries
    if retries:  # the retry samples (a greedy judge would repeat itself) with its own seed
        first, again = calls[0][1], calls[1][1]
        assert first.temperature == 0.0 and again.temperature == 0.7 and again.seed != first.seed
    with pytest.raises(ValueError, match="judge_retries"):
        config(tmp_path, judge_retries=-1)


def test_real_minilm_separates_paraphrases_from_unrelated_text(minilm):
    gold = ["The capital of France is Paris.", "Plants absorb carbon dioxide from the air."]
    scores = minilm.similarities(gold * 2, ["Paris is the capital city of France.", "Plants take in carbon dioxide from air.",
                                            "A spider has eight legs.", ""])  # fmt: skip
    assert scores[0] > 0.8 and scores[1] > 0.8 and scores[2] < 0.3 and scores[3] == 0.0
    assert minilm.accepts(0.8) and not minilm.accepts(0.79)


def test_rows_are_read_from_every_layout(tmp_path):
    from datasets import Dataset

    cfg = RefineConfig(output_dir=str(tmp_path))
    plain = Dataset.from_dict({"prompt": ["Question: What is GDP?\nAnswer:"], "completion": [" Output of a country."]})
    [row], _ = read_rows(plain, cfg)
    assert (row.question, row.answer, row.prompt) == ("What is GDP?", "Output of a country.", plain[0]["prompt"])
    assert row.training_record("Fused.", {})["completion"] == " Fused."
    chat = Dataset.from_dict(
        {"messages": [[{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]]}
    )
    [row], _ = read_rows(chat, cfg)
    assert row.question == "Hi?" and row.training_record("Hey.", {})["completion"] == [
        {"role": "assistant", "content": "Hey."}
    ]
    [row], _ = read_rows(qa_dataset(QA[:1]), cfg)
    assert row.id == "q0" and row.prompt == [{"role": "user", "content": QA[0][0]}]
    [row], _ = read_rows(qa_dataset(QA[:1]), RefineConfig(output_dir=str(tmp_path), output_format="plain"))
    assert row.prompt == f"Question: {QA[0][0]}\nAnswer:" and row.training_record("X", {})["completion"] == " X"
    custom = Dataset.from_dict({"instruction": ["Q?"], "output": ["A."]})
    with pytest.raises(ValueError, match="--question_column"):
        read_rows(custom, cfg)
    [row], _ = read_rows(
        custom, RefineConfig(output_dir=str(tmp_path), question_column="instruction", answer_column="output")
    )
    assert (row.id, row.question, row.answer) == ("0", "Q?", "A.")


def test_bad_rows_are_skipped_with_their_reason(tmp_path):
    from datasets import Dataset

    data = Dataset.from_list([
        {"id": "ok", "question": "Q?", "answer": "A."}, {"id": "no-q", "question": None, "answer": "A."},
        {"id": "empty-a", "question": "Q?", "answer": "  "}, {"id": "ok", "question": "Q2?", "answer": "B."},
        {"id": "long", "question": "Q?" * 50, "answer": "A."},
    ])  # fmt: skip
    rows, skipped = read_rows(data, RefineConfig(output_dir=str(tmp_path), max_input_chars=50))
    assert [r.id for r in rows] == ["ok"]
    assert [(s["id"], s["reason"].split(" (")[0]) for s in skipped] == [
        ("no-q", "missing question"),
        ("empty-a", "empty answer"),
        ("ok", "duplicate id"),
        ("long", "too long"),
    ]
    numbers = Dataset.from_dict({"question": ["Q?", "Q2?"], "answer": [[1, 2], [3]]})
    with pytest.raises(ValueError, match=r"all 2 rows were skipped \(first: row 0, non-text answer \(list\)\)"):
        read_rows(numbers, RefineConfig(output_dir=str(tmp_path)))


def test_refine_writes_training_rows_with_provenance_and_a_summary(tmp_path, minilm):
    judges = (lambda p: "0.9", lambda p: "Score: 7/10", lambda p: "no idea")
    summary = refine(
        config(tmp_path, num_judges=3), qa_dataset(), backends=pool(judges=judges), semantic_filter=minilm
    )
    out = tmp_path / "refined"
    rows = read_jsonl(out / "refined.jsonl")
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(5)]
    first = rows[0]
    assert first["prompt"] == [{"role": "user", "content": QA[0][0]}]
    assert first["completion"] == [{"role": "assistant", "content": "In short: " + QA[0][1] + " Indeed."}]
    p = first["provenance"]
    assert p["status"] == "accepted" and p["source"] == "fusion" and p["similarity"] >= 0.8 and p["gold"] == QA[0][1]
    assert p["fusion_rounds"] == 1 and p["candidates"][0]["scores"] == [0.9, 0.7, None]
    assert p["candidates"][0]["unparsed"] == ["no idea"] and p["best_score"] == 0.8
    assert p["models"] == {
        "rewrite": "rewriter",
        "embedding": minilm.name,
        "fusion": "fuser",
        "judges": ["judge0", "judge1", "judge2"],
    }
    assert p["prompt_versions"]["rewrite"] == load_prompt("rewrite").version
    saved = json.loads((out / "summary.json").read_text())
    assert saved["rows_refined"] == 5 and saved["acceptance_rate"] == 1.0 and saved["judge_scores"]["unparseable"] == 5
    assert saved["fusion_rounds"] == {"1": 5} and summary["stopped_early"] == 5
    # 5 rows × 3 judges × 3 tokens, plus the unreadable judge asked once more per row (judge_retries=1)
    assert saved["tokens_generated"] == {"rewrite": 15, "fusion": 15, "judge": 60}
    assert json.loads((out / "run_config.json").read_text())["outcome"]["similarity_threshold"] == 0.8


def test_fusion_runs_all_rounds_below_the_stop_score_and_keeps_the_best(tmp_path, minilm):
    rounds = iter(["first try", "second try, better", "third try"])
    scores = {"first try": "0.3", "second try, better": "0.6", "third try": "0.5"}

    def fuser(prompt):
        return next(rounds)

    def judge(prompt):
        return scores[field_of(prompt, "Candidate answer")]

    refine(config(tmp_path), qa_dataset(QA[:1]), backends=pool(fuse=fuser, judges=(judge,)), semantic_filter=minilm)
    [row] = read_jsonl(tmp_path / "refined" / "refined.jsonl")
    assert [c["mean_score"] for c in row["provenance"]["candidates"]] == [0.3, 0.6, 0.5]
    assert row["completion"][0]["content"] == "second try, better" and row["provenance"]["fusion_rounds"] == 3


def test_low_similarity_falls_back_to_gold_and_skips_fusion(tmp_path, minilm):
    backends = pool(rewrite=lambda p: "Bananas are yellow fruit.")
    summary = refine(config(tmp_path), qa_dataset(QA[:2]), backends=backends, semantic_filter=minilm)
    rows = read_jsonl(tmp_path / "refined" / "refined.jsonl")
    assert [r["completion"][0]["content"] for r in rows] == [a for _, a in QA[:2]]
    assert {r["provenance"]["source"] for r in rows} == {"gold"} and summary["acceptance_rate"] == 0.0
    assert backends.get("fuser").calls == []


def test_without_fusion_the_accepted_rewrite_is_the_target(tmp_path, minilm):
    refine(config(tmp_path, fusion=False), qa_dataset(QA[:2]), backends=pool(), semantic_filter=minilm)
    rows = read_jsonl(tmp_path / "refined" / "refined.jsonl")
    assert [r["completion"][0]["content"] for r in rows] == ["In short: " + a for _, a in QA[:2]]
    assert rows[0]["provenance"]["source"] == "rewrite" and "fusion" not in rows[0]["provenance"]["prompt_versions"]


def test_no_readable_judge_score_keeps_the_rewrite(tmp_path, minilm):
    refine(
        config(tmp_path, fusion_rounds=2),
        qa_dataset(QA[:1]),
        backends=pool(judges=(lambda p: "great",)),
        semantic_filter=minilm,
    )
    [row] = read_jsonl(tmp_path / "refined" / "refined.jsonl")
    assert row["provenance"]["source"] == "rewrite" and row["provenance"]["fusion_rounds"] == 2
    assert row["completion"][0]["content"] == "In short: " + QA[0][1]


def test_reasoning_blocks_are_stripped_from_rewrites_and_fused_answers(tmp_path, minilm):
    """A reasoning model's trace never reaches ŷ, the similarity filter, the judges or the provenance: paired tags,
    other tag names, and a lone closing tag (a chat template that opened `<think>` in the prompt) alike."""
    traces = [
        "<think>Keep every fact.</think> ",
        "<reasoning>Paris stays.</reasoning>\n",
        "Keep the facts.\n</think>\n",
    ]
    backends = pool(
        rewrite=lambda p: traces[[q for q, _ in QA].index(field_of(p, "Question"))] + paraphrase(p),
        fuse=lambda p: "<THINKING>Merge them.</THINKING> " + field_of(p, "Draft answer") + " Indeed.",
        judges=(lambda p: "<think>Is it 0.2? No.</think> 0.9",),
    )
    refine(config(tmp_path), qa_dataset(QA[:3]), backends=backends, semantic_filter=minilm)
    rows = read_jsonl(tmp_path / "refined" / "refined.jsonl")
    assert [r["completion"][0]["content"] for r in rows] == ["In short: " + a + " Indeed." for _, a in QA[:3]]
    for row in rows:
        p = row["provenance"]
        assert p["rewrite"] == "In short: " + p["gold"] and p["status"] == "accepted" and p["source"] == "fusion"
        assert p["candidates"][0]["text"] == row["completion"][0]["content"] and p["best_score"] == 0.9
    judge_prompts = [text for prompts, _ in backends.get("judge0").calls for text in prompts]
    assert not any(tag in text.lower() for text in judge_prompts for tag in ("think", "reasoning"))


def test_a_reply_cut_at_the_token_limit_is_never_the_target(tmp_path, minilm):
    """A rewrite or fused answer that stopped at max_new_tokens (finish_reason "length") is a half answer: a cut
    rewrite falls back to y and is not fused; a cut fused answer is not judged nor selected; the provenance and the
    summary say so."""
    from raft_trainer.backends import Generation

    cut = lambda text: Generation(text, num_tokens=128, finish_reason="length")  # noqa: E731
    fusion_calls = {q: 0 for q, _ in QA}

    def rewrite(prompt):  # q0's rewrite is cut mid-sentence (still similar enough to pass the filter)
        text = paraphrase(prompt)
        return cut(text[: text.rindex(" ")]) if field_of(prompt, "Question") == QA[0][0] else text

    def fuse(prompt):  # q1: round 1 cut, round 2 whole; q2: every round cut
        question = field_of(prompt, "Question")
        fusion_calls[question] += 1
        text = field_of(prompt, "Draft answer") + " Indeed."
        return text if question == QA[1][0] and fusion_calls[question] == 2 else cut(text[:20])

    backends = pool(rewrite=rewrite, fuse=fuse)
    summary = refine(config(tmp_path, fusion_rounds=2), qa_dataset(QA[:3]), backends=backends, semantic_filter=minilm)
    rows = read_jsonl(tmp_path / "refined" / "refined.jsonl")
    p0, p1, p2 = (r["provenance"] for r in rows)
    assert rows[0]["completion"][0]["content"] == QA[0][1] and p0["similarity"] >= 0.8
    assert (p0["status"], p0["source"], p0["fallback_reason"], p0["rewrite_truncated"]) == (
        "fallback", "gold", "rewrite_truncated", True
    )  # fmt: skip
    assert fusion_calls[QA[0][0]] == 0 and p0["fusion_rounds"] == 0
    assert rows[1]["completion"][0]["content"] == "In short: " + QA[1][1] + " Indeed."
    assert (p1["source"], p1["fallback_reason"], p1["truncated_candidates"]) == ("fusion", None, 1)
    assert [(c["truncated"], c["scores"]) for c in p1["candidates"]] == [(True, []), (False, [0.9])]
    assert rows[2]["completion"][0]["content"] == "In short: " + QA[2][1]
    assert (p2["source"], p2["fallback_reason"], p2["truncated_candidates"]) == ("rewrite", "fusion_truncated", 2)
    judge_prompts = [text for prompts, _ in backends.get("judge0").calls for text in prompts]
    assert len(judge_prompts) == 1 and "Indeed." in judge_prompts[0]  # only the whole answer was judged
    assert summary["fallback_reasons"] == {"fusion_truncated": 1, "rewrite_truncated": 1}
    assert summary["truncated"] == {"rewrites": 1, "fusion_candidates": 3}
    assert summary["judge_scores"]["unparseable"] == 0 and summary["completion_source"]["gold"] == 1


def test_a_failing_backend_stops_the_run_keeps_the_rows_and_resume_finishes(tmp_path, minilm):
    with pytest.raises(BackendError, match=r"4 refined rows are saved in .*refined.jsonl; run the same command again"):
        refine(config(tmp_path), qa_dataset(), backends=pool(rewriter=3), semantic_filter=minilm)
    assert [r["id"] for r in read_jsonl(tmp_path / "refined" / "refined.jsonl")] == ["q0", "q1", "q2", "q3"]
    summary = refine(config(tmp_path), qa_dataset(), backends=pool(), semantic_filter=minilm)
    assert summary["rows_this_run"] == 1 and summary["rows_refined"] == 5


def test_resuming_with_other_settings_is_refused_and_overwrite_starts_over(tmp_path, minilm):
    refine(config(tmp_path), qa_dataset(QA[:2]), backends=pool(), semantic_filter=minilm)
    with pytest.raises(ValueError, match=r"similarity_threshold: 0.8 -> 0.5.*--overwrite"):
        refine(config(tmp_path, similarity_threshold=0.5), qa_dataset(QA[:2]), backends=pool(), semantic_filter=minilm)
    summary = refine(config(tmp_path, similarity_threshold=0.5, overwrite=True), qa_dataset(QA[:2]), backends=pool(),
                     semantic_filter=minilm)  # fmt: skip
    assert summary["rows_this_run"] == 2


def test_a_partial_last_line_is_dropped_and_its_row_redone(tmp_path, minilm):
    refine(config(tmp_path), qa_dataset(QA[:3]), backends=pool(), semantic_filter=minilm)
    path = tmp_path / "refined" / "refined.jsonl"
    complete = path.read_bytes()
    lines = complete.splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]) + lines[2][:40])  # a kill in the middle of writing row 3
    assert [r["id"] for r in AppendOnlyJsonl(path).load()] == ["q0", "q1"]
    assert path.read_bytes() == b"".join(lines[:2])
    refine(config(tmp_path), qa_dataset(QA[:3]), backends=pool(), semantic_filter=minilm)
    assert path.read_bytes() == complete


def test_refined_file_trains_with_raft_trainer(tmp_path, tiny_model_dir, minilm):
    from raft_trainer import RAFTConfig, RAFTTrainer
    from raft_trainer.data import load_data

    backends = pool(rewrite=lambda p: "The capital of France is Paris .", fuse=lambda p: "Two plus two is four .")
    refine(config(tmp_path, output_format="plain"), qa_dataset(), backends=backends, semantic_filter=minilm)
    dataset = load_data(str(tmp_path / "refined" / "refined.jsonl"))
    args = RAFTConfig(output_dir=str(tmp_path / "train"), max_steps=2, per_device_train_batch_size=2, bf16=False,
                      max_completion_length=4, report_to=[], logging_steps=1, save_strategy="no")  # fmt: skip
    trainer = RAFTTrainer(tiny_model_dir, args=args, train_dataset=dataset)
    trainer.train()
    assert all("raft/lambda" in log for log in trainer.state.log_history[:2])


def test_tiny_model_end_to_end_through_the_cli_with_a_yaml_config(tmp_path, tiny_model_dir, capsys):
    from raft_trainer.cli.main import main

    data = tmp_path / "qa.csv"
    qa_dataset(QA[:3]).to_csv(str(data))
    recipe = tmp_path / "refine.yaml"
    recipe.write_text(
        f"dataset_name: {data}\nrewrite_model: {tiny_model_dir}\noutput_dir: {tmp_path / 'out'}\n"
        "similarity_threshold: 0.0\nfusion_rounds: 2\nrewrite_max_new_tokens: 40\nfusion_max_new_tokens: 40\n"
        "judge_max_new_tokens: 3\nrewrite_temperature: 0.8\nbatch_size: 2\n"
        # the random model seldom ends at EOS, and a reply cut at the token cap is never ŷ: end replies at a word
        'stop_sequences: [" .", " ?"]\n'
    )
    main(["refine", "--config", str(recipe), "--fusion_rounds", "1"])
    rows = read_jsonl(tmp_path / "out" / "refined.jsonl")
    assert [r["id"] for r in rows] == ["q0", "q1", "q2"]
    assert all(r["provenance"]["status"] == "accepted" and r["provenance"]["fusion_rounds"] == 1 for r in rows)
    assert not any(r["provenance"]["rewrite_truncated"] for r in rows)
    assert rows[0]["provenance"]["models"]["rewrite"] == tiny_model_dir
    out = capsys.readouterr().out
    assert "refined 3 rows" in out and "cut at the token limit (never used as ŷ): 0 rewrites" in out


def test_killed_twice_at_random_points_then_resumed_equals_an_uninterrupted_run(tmp_path, tiny_model_dir):
    import os
    import random
    import subprocess
    import sys
    import time

    script = os.path.join(os.path.dirname(__file__), "refine_run.py")

    def start(output_dir):
        return subprocess.Popen([sys.executable, script, tiny_model_dir, str(output_dir)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)  # fmt: skip

    reference = start(tmp_path / "reference")
    assert reference.wait(timeout=300) == 0, reference.stderr.read().decode()[-3000:]
    expected = (tmp_path / "reference" / "refined.jsonl").read_bytes()
    assert expected.count(b"\n") == 30

    seed = random.randrange(10**6)
    rng = random.Random(seed)
    output = tmp_path / "killed"
    kills = []
    for _ in range(2):
        process = start(output)
        done_before = (
            (output / "refined.jsonl").read_bytes().count(b"\n") if (output / "refined.jsonl").exists() else 0
        )
        target = rng.randint(done_before + 1, 26)
        while process.poll() is None:
            path = output / "refined.jsonl"
            if path.exists() and path.read_bytes().count(b"\n") >= target:
                time.sleep(rng.uniform(0, 0.05))
                break
            time.sleep(0.002)
        process.kill()  # SIGKILL
        process.wait()
        kills.append((output / "refined.jsonl").read_bytes().count(b"\n"))
    assert all(0 < k < 30 for k in kills), f"seed {seed}: the kills did not land mid-run ({kills})"
    final = start(output)
    assert final.wait(timeout=300) == 0, final.stderr.read().decode()[-3000:]
    assert (output / "refined.jsonl").read_bytes() == expected, f"seed {seed}, rows at the kills: {kills}"
    summary = json.loads((output / "summary.json").read_text())
    assert summary["rows_refined"] == 30 and summary["rows_this_run"] == 30 - kills[-1]


@pytest.mark.parametrize(
    "recipe", sorted((__import__("pathlib").Path(__file__).parents[1] / "examples" / "refine").glob("*.yaml"))
)
def test_shipped_refine_configs_parse(recipe):
    from raft_trainer.cli.refine import make_parser

    (config,) = make_parser().parse_args_and_config(args=["--config", str(recipe)])
    assert isinstance(config, RefineConfig) and config.output_dir.startswith("runs/")
    if "served" in recipe.name:
        assert config.stop_sequences == [] and len(config.judge_models) == 2 and "@http" in config.fusion_model


def test_placeholders_inside_questions_and_answers_are_never_filled(tmp_path, minilm):
    rows = [("What does {answer} stand for in the template?", "It stands for the {question} slot's reply.")]
    backends = pool()
    refine(config(tmp_path), qa_dataset(rows), backends=backends, semantic_filter=minilm)
    [rewrite_prompt] = backends.get("rewriter").calls[0][0]
    assert "Question: What does {answer} stand for in the template?" in rewrite_prompt
    assert rewrite_prompt.count(rows[0][1]) == 1  # the gold answer once, where the template puts it


def test_a_second_run_on_one_folder_is_refused_and_a_doubled_store_is_not_resumed(tmp_path, minilm):
    from raft_trainer.refine.store import OutputLockedError, output_lock

    out = tmp_path / "refined"
    out.mkdir()
    with output_lock(out):  # another run holds the folder
        with pytest.raises(OutputLockedError, match=f"another run holds {out}"):
            refine(config(tmp_path), qa_dataset(QA[:2]), backends=pool(), semantic_filter=minilm)
    assert not (out / "refined.jsonl").exists()
    refine(config(tmp_path), qa_dataset(QA[:2]), backends=pool(), semantic_filter=minilm)  # the lock was released
    store = out / "refined.jsonl"
    store.write_text(store.read_text() * 2)  # what two unlocked runs used to leave
    with pytest.raises(ValueError, match=r"holds 2 row id\(s\) more than once \(first: 'q0'\).*--overwrite"):
        refine(config(tmp_path), qa_dataset(QA[:2]), backends=pool(), semantic_filter=minilm)
    refine(config(tmp_path, overwrite=True), qa_dataset(QA[:2]), backends=pool(), semantic_filter=minilm)
    assert [r["id"] for r in read_jsonl(store)] == ["q0", "q1"]


def test_no_usable_rows_is_one_clear_error(tmp_path):
    from datasets import Dataset

    empty = Dataset.from_dict({"question": [], "answer": []})
    with pytest.raises(ValueError, match=r"No usable question/answer rows .*: the dataset has no rows"):
        refine(config(tmp_path), empty, backends=pool())
    blank = Dataset.from_dict({"question": ["", "Q?"], "answer": ["A.", " "]})
    with pytest.raises(ValueError, match=r"all 2 rows were skipped \(first: row 0, empty question\)"):
        refine(config(tmp_path), blank, backends=pool())


def test_a_store_written_before_a_new_setting_existed_still_resumes(tmp_path, minilm):
    """A setting added later (absent from run_config.json) counts as its default for the stored run."""
    refine(config(tmp_path), qa_dataset(QA[:2]), backends=pool(), semantic_filter=minilm)
    saved = tmp_path / "refined" / "run_config.json"
    record = json.loads(saved.read_text())
    del record["outcome"]["judge_retries"]
    saved.write_text(json.dumps(record))
    refine(config(tmp_path), qa_dataset(QA[:3]), backends=pool(), semantic_filter=minilm)  # default 1: resumes
    assert len(read_jsonl(tmp_path / "refined" / "refined.jsonl")) == 3
    with pytest.raises(ValueError, match=r"judge_retries: 1 -> 3"):
        refine(config(tmp_path, judge_retries=3), qa_dataset(QA[:3]), backends=pool(), semantic_filter=minilm)


def test_output_format_auto_follows_the_models_chat_template(tmp_path):
    """`output_format="auto"` (the default of refine and eval): chat prompts for a tokenizer with a chat template,
    plain "Question: ...\nAnswer:" prompts without one (the rule `raft train` applies); served models by `--api`."""
    from raft_trainer.qa_rows import resolve_output_format

    from conftest import build_tokenizer

    for chat, expected in ((True, "conversational"), (False, "plain")):
        build_tokenizer(chat_template=chat).save_pretrained(tmp_path / str(chat))
        assert resolve_output_format("auto", str(tmp_path / str(chat))) == expected
        assert resolve_output_format("auto", f"vllm:{tmp_path / str(chat)}") == expected
    assert resolve_output_format("plain", str(tmp_path / "True")) == "plain"  # an explicit format is kept
    assert resolve_output_format("auto", "m@http://127.0.0.1:8000/v1") == "conversational"
    assert resolve_output_format("auto", "m@http://127.0.0.1:8000/v1", api="completions") == "plain"
    assert resolve_output_format("auto", "anything", backend=ScriptedBackend("s", str)) == "conversational"
    with pytest.raises(ValueError, match="'auto', 'conversational' or 'plain'"):
        RefineConfig(output_dir=str(tmp_path), output_format="chat")


def test_refine_with_auto_format_writes_plain_prompts_for_a_model_without_chat_template(tmp_path, minilm):
    """End to end: a base model (no chat template) as rewriter gets plain prompts, and the stored run settings say
    which format was used (so a resume compares the concrete format)."""
    from conftest import build_model, build_tokenizer

    tokenizer = build_tokenizer(chat_template=False)
    build_model(tokenizer).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    config = RefineConfig(
        output_dir=str(tmp_path / "out"), rewrite_model=str(tmp_path / "base"), fusion=False, rewrite_max_new_tokens=4
    )
    refine(config, qa_dataset(QA[:2]), semantic_filter=minilm)
    rows = [json.loads(line) for line in (tmp_path / "out" / "refined.jsonl").read_text().splitlines()]
    assert [row["prompt"] for row in rows] == [f"Question: {q}\nAnswer:" for q, _ in QA[:2]]
    stored = json.loads((tmp_path / "out" / "run_config.json").read_text())["outcome"]
    assert stored["output_format"] == "plain"
