"""`run_lab()`: Stage 1, every method × seed trained on the same data and budget, each evaluated with `raft eval`'s
metrics against the original model, then the report. Finished runs are appended to `runs.jsonl` (with refine's
`AppendOnlyJsonl`), so a lab that was stopped resumes where it stopped when started again with the same settings; a
last line cut by a kill is dropped and that run done again."""

from __future__ import annotations

import gc
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..output_files import write_json_atomic, write_jsonl_atomic, write_text_atomic
from ..refine.store import AppendOnlyJsonl
from .config import LabConfig
from .domains import GENERAL_PROBES, Domain, prompt_of, read_qa_rows, resolve_domain, training_rows
from .methods import METHODS, Method, train
from .report import machine, markdown, plot_curves, plot_tradeoff, run_metrics, summarise, verdict

logger = logging.getLogger(__name__)
OUTCOME_KEYS = ("methods", "seeds", "output_dir", "plot", "save_models", "preset", "report_to")  # not outcome-shaping


def resolve_model(name: str | None, output_dir: Path) -> str:
    if name == "tiny":
        from .tiny import build_tiny_model

        return build_tiny_model(output_dir / "tiny-model")
    if name is None:
        from ..default_model import default_model_path

        return default_model_path()
    return name


@dataclass
class LabInputs:
    """Everything the runs share: the model, the data of every method, the evaluation sets and the base scores."""

    model_path: str
    domain: Domain
    train_qa: list[dict]
    test_qa: list[dict]
    rows: dict[str, list[dict]]  # "gold" and (when a method needs it) "refined" prompt/completion rows
    stage1: dict
    eval_config: object
    eval_data: object
    base_scores: dict | None = None
    teacher_reference_accuracy: float | None = None
    _base: object = None

    def base_backend(self):
        """The original model for generation and drift, loaded on first use (not at all when every run is done)."""
        if self._base is None:
            from ..backends.local import TransformersBackend

            self._base = TransformersBackend(self.model_path, options=self.eval_config.backend_options())
        return self._base


def run_lab(config: LabConfig) -> dict:
    """Run the comparison `config` describes and write the report into `config.output_dir`; returns the report."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path = resolve_model(config.model_name_or_path, out)
    domain = resolve_domain(config.domain, config.domain_dataset, config.domain_test_dataset, config.case_sensitive)
    runs = _load_runs(out, config, model_path, domain)  # refuses other settings before anything is computed
    inputs = prepare(config, out, model_path, domain)
    todo = [(seed, m) for seed in range(config.seeds) for m in config.methods]
    done = {(r["seed"], r["method"]) for r in runs}
    bar = tqdm(total=len(todo), initial=sum(t in done for t in todo), desc="raft lab", unit="run", dynamic_ncols=True)
    for seed, name in todo:
        if (seed, name) in done:
            continue
        bar.set_postfix_str(f"{name}, seed {seed}")
        run = run_one(METHODS[name], seed, inputs, config, out)
        AppendOnlyJsonl(out / "runs.jsonl", key=None).append([run])  # fsynced: a kill cuts at most this line
        runs.append(run)
        bar.update(1)
    bar.close()
    runs = [r for r in runs if r["method"] in config.methods and r["seed"] < config.seeds]
    return write_report(config, inputs, runs, out, time.perf_counter() - start)


def prepare(config: LabConfig, out: Path, model_path: str, domain: Domain) -> LabInputs:
    """Read the domain, run Stage 1 when a method needs ŷ, load the evaluation sets and score the original model
    (keeping only the general probes it answers). The original model's evaluation is kept in `base_eval.json`, so a
    resumed lab does not repeat it."""
    from ..eval.metrics import probe_hits, score_model
    from ..eval.runner import EvalData

    train_qa = read_qa_rows(domain.train_file, config.train_limit)
    test_qa = read_qa_rows(domain.test_file, config.test_limit)
    overlap = {r["question"] for r in train_qa} & {r["question"] for r in test_qa}
    if overlap:
        raise ValueError(
            f"{len(overlap)} held-out questions are also training questions, e.g. {sorted(overlap)[0]!r}."
        )
    write_jsonl_atomic(out / "test.jsonl", test_qa)
    rows = {"gold": training_rows(train_qa)}
    stage1 = {"description": "not run (no method trains on refined data)"}
    if any(METHODS[m].data == "refined" for m in config.methods):
        rows["refined"], stage1 = _stage1(config, model_path, train_qa, out)
    eval_config = _eval_config(config, model_path, domain, out)
    data = EvalData.load(eval_config)
    data.ifeval = data.ifeval[: config.ifeval_limit] if config.ifeval_limit else data.ifeval
    data.probes = data.probes[: config.probe_limit] if config.probe_limit else data.probes
    inputs = LabInputs(model_path, domain, train_qa, test_qa, rows, stage1, eval_config, data)
    cache = out / "base_eval.json"
    if cache.exists():
        saved = json.loads(cache.read_text())
        data.probes, inputs.base_scores = saved["probes"], saved["base_scores"]
        inputs.teacher_reference_accuracy = saved["teacher_reference_accuracy"]
        return inputs
    base = inputs.base_backend()
    data.probes = [p for p, hit in zip(data.probes, probe_hits(base, data.probes)) if hit]
    write_jsonl_atomic(out / "probes_kept.jsonl", data.probes)
    if not data.probes:
        logger.warning("The original model answers none of the general probes: probe retention is not measured.")
    inputs.teacher_reference_accuracy = _teacher_reference_accuracy(base, test_qa, config, domain.case_sensitive)
    inputs.base_scores = score_model(base, base, data, eval_config)
    write_json_atomic(
        cache,
        {
            "probes": data.probes,
            "base_scores": inputs.base_scores,
            "teacher_reference_accuracy": inputs.teacher_reference_accuracy,
        },
    )
    return inputs


def run_one(method: Method, seed: int, inputs: LabInputs, config: LabConfig, out: Path) -> dict:
    """Train one method with one seed and score it against the original model (`base` is not trained)."""
    from ..backends.local import TransformersBackend
    from ..eval.metrics import score_model

    start = time.perf_counter()
    if method.trainer == "none":
        scores, history, train_seconds = inputs.base_scores, [], 0.0
    else:
        trained = train(
            method,
            inputs.model_path,
            inputs.rows[method.data],
            config,
            seed,
            str(out / "runs" / f"{method.name}-seed{seed}"),
        )
        model = TransformersBackend(trained.model, trained.tokenizer, options=inputs.eval_config.backend_options())
        scores = score_model(model, inputs.base_backend(), inputs.eval_data, inputs.eval_config)
        if config.save_models:
            trained.model.save_pretrained(out / "models" / f"{method.name}-seed{seed}")
            trained.tokenizer.save_pretrained(out / "models" / f"{method.name}-seed{seed}")
        history, train_seconds = trained.log_history, round(trained.train_seconds, 1)
        del trained, model
        gc.collect()
    return {
        "method": method.name,
        "seed": seed,
        "scores": scores,
        "log_history": history,
        "train_seconds": train_seconds,
        "seconds": round(time.perf_counter() - start, 1),
        "metrics": run_metrics(scores, inputs.base_scores, train_seconds),
    }


def write_report(config: LabConfig, inputs: LabInputs, runs: list[dict], out: Path, seconds: float) -> dict:
    """lab_results.json and .md, and the plots."""
    methods = summarise(runs, config.methods)
    data = inputs.eval_data
    report = {
        "config": {
            **config.to_dict(),
            "model": inputs.model_path,
            "domain": inputs.domain.name,
            "case_sensitive": inputs.domain.case_sensitive,
        },
        "teacher_reference_accuracy": inputs.teacher_reference_accuracy,
        "base_scores": inputs.base_scores,
        "methods": methods,
        "verdict": verdict(methods),
        "stage1": inputs.stage1,
        "sizes": {
            "train": len(inputs.train_qa),
            "test": len(inputs.test_qa),
            "probes": len(data.probes),
            "ifeval": len(data.ifeval),
            "general_paragraphs": len(data.general_text),
        },
        "wall_seconds": round(seconds, 1),
        "run_seconds": round(sum(r.get("seconds", 0.0) for r in runs), 1),
        "machine": machine(),
    }
    write_json_atomic(out / "lab_results.json", report)
    write_text_atomic(out / "lab_results.md", markdown(report))
    if config.plot:
        plot_tradeoff(report, str(out / "lab_tradeoff.png"))
        plot_curves(runs, str(out / "lab_curves.png"))
    return report


def _load_runs(out: Path, config: LabConfig, model_path: str, domain) -> list[dict]:
    """Finished runs of an earlier lab in `out` with the same outcome-shaping settings; a clear error otherwise."""
    settings = {k: v for k, v in config.to_dict().items() if k not in OUTCOME_KEYS}
    settings.update(model=model_path, domain=domain.name, case_sensitive=domain.case_sensitive)
    path, runs_path = out / "lab_config.json", out / "runs.jsonl"
    if path.exists() and runs_path.exists():
        saved = json.loads(path.read_text())
        if saved != json.loads(json.dumps(settings)):
            changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
            raise ValueError(
                f"{out} holds a lab run with other settings ({', '.join(changed)}); use another "
                "--output_dir, or delete runs.jsonl there to start over."
            )
        return AppendOnlyJsonl(runs_path, key=None).load()  # refine's reader: a cut last line is dropped
    runs_path.unlink(missing_ok=True)
    (out / "base_eval.json").unlink(missing_ok=True)
    write_json_atomic(path, settings)
    return []


def _stage1(config: LabConfig, model_path: str, train_qa: list[dict], out: Path) -> tuple[list[dict], dict]:
    """`raft refine` of the training rows with the original model as rewriter (ŷ for sft_refined and the raft
    methods); rows it could not refine keep their gold answer."""
    from datasets import Dataset

    from ..refine import RefineConfig, refine

    write_jsonl_atomic(out / "train.jsonl", train_qa)
    fusion = config.fusion_model is not None
    refine_config = RefineConfig(
        output_dir=str(out / "refine"),
        output_format="plain",
        rewrite_model=model_path,
        rewrite_max_new_tokens=64,
        fusion=fusion,
        fusion_model=config.fusion_model,
        similarity_threshold=config.similarity_threshold,
    )
    columns = ("id", "question", "answer")  # the lab's own settings (lab_config.json) pin which rows these are
    summary = refine(refine_config, dataset=Dataset.from_list([{k: r[k] for k in columns} for r in train_qa]))
    refined = {}
    for line in (out / "refine" / "refined.jsonl").read_text().splitlines():
        record = json.loads(line)
        refined[record["id"]] = record["completion"]
    rows = [{**row, "completion": refined.get(row["id"], row["completion"])} for row in training_rows(train_qa)]
    sources = summary.get("completion_source", {})
    description = (
        f"rewrite by the original model, MiniLM filter τ = {config.similarity_threshold}, "
        + (f"fusion by {config.fusion_model}" if fusion else "no fusion (ŷ = accepted rewrite, else gold)")
        + f"; sources {sources}"
    )
    return rows, {"description": description, "summary": summary}


def _eval_config(config: LabConfig, model_path: str, domain, out: Path):
    from ..eval import EvalConfig

    return EvalConfig(
        base_model=model_path,
        domain_dataset=str(out / "test.jsonl"),
        output_format="plain",
        stop_sequences=["\n"],
        max_new_tokens=32,
        case_sensitive=domain.case_sensitive,
        probes_file=config.probes_file or GENERAL_PROBES,
        ifeval_max_new_tokens=config.ifeval_max_new_tokens,
        output_dir=str(out / "eval"),
        plot=False,
        generation_batch_size=16,
    )


def _teacher_reference_accuracy(base, test_qa: list[dict], config: LabConfig, case_sensitive: bool) -> float:
    """How often the original model, shown the gold answer in RAFT's teacher template, answers the held-out question
    correctly (greedy, first line): whether the answer-conditioned teacher uses the reference at all."""
    from ..backends import SamplingSettings
    from ..eval.domain import contains_answer
    from ..teacher_prompts import DEFAULT_TEACHER_TEMPLATE, render_teacher_text

    template = config.teacher_template or DEFAULT_TEACHER_TEMPLATE
    prompts = [render_teacher_text(template, reference=r["answer"], prompt=prompt_of(r["question"])) for r in test_qa]
    replies = base.generate(prompts, SamplingSettings(32, stop=("\n",)))
    hits = [
        contains_answer(g.text, [r["answer"], *r["aliases"]], case_sensitive=case_sensitive)
        for g, r in zip(replies, test_qa)
    ]
    return sum(hits) / len(hits)
