"""`evaluate()`: score the base model and each checkpoint on every requested metric, then add retention and gains."""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..backends import BackendPool
from ..data import read_jsonl
from ..errors import DataError
from ..qa_rows import QARow, resolve_output_format
from .config import EvalConfig
from .metrics import score_model
from .probes import bundled, read_paragraphs
from .trackers import log_report

logger = logging.getLogger(__name__)


@dataclass
class EvalData:
    """Every evaluation set, read once and shared by all models."""

    domain_rows: list[QARow] = field(default_factory=list)
    ifeval: list[dict] = field(default_factory=list)
    probes: list[dict] = field(default_factory=list)
    general_qa: list[dict] = field(default_factory=list)
    general_text: list[str] = field(default_factory=list)
    output_format: str = "conversational"  # of the question prompts (domain, general_judged), made concrete

    @classmethod
    def load(cls, config: EvalConfig, prompt_format: Callable[[], str] | None = None) -> EvalData:
        """Read and check every set `config.metrics` needs. `prompt_format` makes `output_format="auto"` concrete
        (it may load a tokenizer): called after every file is read and checked, before question prompts are built."""
        from ..data import load_data
        from ..qa_rows import read_rows

        domain = None
        if "domain" in config.metrics:
            domain = load_data(config.domain_dataset, config.dataset_config, config.dataset_split)
        data = cls(**{name: rows[: config.limit] for name, rows in general_sets(config).items()})
        if domain is None and not data.general_qa:
            return data
        data.output_format = config.output_format
        if data.output_format == "auto" and prompt_format is not None:
            data.output_format = prompt_format()
        if domain is not None:
            concrete = copy.copy(config)
            concrete.output_format = data.output_format
            data.domain_rows, skipped = read_rows(domain, concrete, config.limit)
            if skipped:
                logger.warning("domain set: %d rows skipped (%s)", len(skipped), skipped[0]["reason"])
        return data


def general_sets(config: EvalConfig) -> dict[str, list]:
    """The general-ability sets `config.metrics` needs, read and checked: IFEval rows, probes, judged general
    questions, general text paragraphs. Raises `ValueError` naming the file and the problem."""
    from ..data import load_data

    sets = {}
    if "ifeval" in config.metrics:
        source = config.ifeval_dataset or bundled("ifeval_prompts.jsonl")
        sets["ifeval"] = read_jsonl(source) if os.path.isfile(source) else list(load_data(source, split="train"))
        check_ifeval_rows(sets["ifeval"], source)
    if "probes" in config.metrics:
        sets["probes"] = read_probes(config.probes_file or bundled("general_probes.jsonl"))
    if "general_judged" in config.metrics:
        if not config.judge_models:
            raise DataError("--metrics general_judged needs judges: pass --judge_models (any backend spec).")
        sets["general_qa"] = read_probes(config.general_qa_file or bundled("general_probes.jsonl"))
    if {"perplexity", "drift"} & set(config.metrics):
        text_file = config.general_text_file or bundled("general_text.txt")
        sets["general_text"] = read_paragraphs(text_file)
        if not sets["general_text"]:
            raise DataError(
                f"The general text file {text_file!r} has no paragraphs: perplexity and drift need "
                "text (blank-line-separated paragraphs), or leave them out of --metrics."
            )
    return sets


def check_ifeval_rows(rows: list[dict], source: str) -> None:
    """Raise `ValueError` naming `source` and the row unless every row has a `prompt` string, an
    `instruction_id_list` of strings and, when present, `kwargs`: one dict (or null) per instruction, each with the
    keys and value types its upstream checker takes (`instructions.kwargs_problem`)."""
    from .instructions import kwargs_problem

    for number, row in enumerate(rows, start=1):
        ids, kwargs = row.get("instruction_id_list"), row.get("kwargs")
        problem = (
            "no 'prompt' string"
            if not isinstance(row.get("prompt"), str) or not row["prompt"].strip()
            else "'instruction_id_list' is not a list of strings"
            if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids))
            else "'kwargs' is not a list of one object per instruction"
            if kwargs is not None
            and not (
                isinstance(kwargs, list)
                and len(kwargs) == len(ids)
                and all(k is None or isinstance(k, dict) for k in kwargs)
            )
            else None
        )
        if problem:
            raise DataError(f"{source}, row {number}: {problem} (IFEval format); got keys {sorted(row)}.")
        for position, (name, arguments) in enumerate(zip(ids, kwargs or [None] * len(ids)), start=1):
            if argument_problem := kwargs_problem(name, arguments):  # the checker would fail after generation
                raise DataError(
                    f"{source}, row {number}: 'kwargs' of instruction {position} ({name!r}): {argument_problem.rstrip('.')}."
                )
    if not rows:
        raise DataError(f"The IFEval source {source!r} has no rows.")


def read_probes(path: str) -> list[dict]:
    """Probes from a JSONL file: `question` and `answer` (non-empty strings), optional `aliases` (list of strings)
    and `category`. Raises `ValueError` naming the file and line of the first row that lacks one."""
    probes = read_jsonl(path)
    for number, probe in enumerate(probes, start=1):
        aliases = probe.get("aliases", [])
        if not all(isinstance(probe.get(k), str) and probe[k].strip() for k in ("question", "answer")):
            raise DataError(
                f"{path}, row {number}: a probe needs non-empty 'question' and 'answer' strings; "
                f"got keys {sorted(probe)}."
            )
        if not (isinstance(aliases, list) and all(isinstance(a, str) for a in aliases)):
            raise DataError(f"{path}, row {number}: 'aliases' must be a list of strings, got {aliases!r}.")
    if not probes:
        raise DataError(f"The probes file {path!r} has no rows.")
    return probes


def parse_model_list(models: list[str]) -> dict[str, str]:
    """`name=path` (or a bare path, named by its folder) -> {name: path}."""
    named = {}
    for item in models:
        name, sep, path = item.partition("=")
        name, path = (name, path) if sep else (os.path.basename(os.path.normpath(item)), item)
        if name in named or name == "base":
            raise DataError(f"Model name {name!r} is used twice (or is 'base'); name them as name=path.")
        named[name] = path
    return named


def evaluate(config: EvalConfig, *, backends: BackendPool | None = None) -> dict:
    """Score `config.base_model` as `base` and every checkpoint; returns (and writes) the report."""
    from tqdm.auto import tqdm

    from ..default_model import default_model_path
    from .report import add_relative_scores, add_to_model_cards, write_report

    named = parse_model_list(config.models)  # names and inputs are checked before any model loads
    baseline = config.baseline or "base"
    if baseline != "base" and baseline not in named:
        raise DataError(f"--baseline {baseline!r} is not among the models {['base', *named]}.")
    backends = backends or BackendPool(config.backend_options())

    def base_prompt_format() -> str:  # `output_format="auto"`: the base model's tokenizer decides
        spec = config.base_model or default_model_path()
        return resolve_output_format("auto", spec, config.api, backends.built(spec))

    data = EvalData.load(config, base_prompt_format)
    specs = {"base": config.base_model or default_model_path(), **named}
    judged = {"domain", "general_judged"} & set(config.metrics)
    judges = [backends.get(spec) for spec in config.judge_models] if judged else []
    base = backends.get(specs["base"])
    results = {}
    for name, spec in tqdm(specs.items(), desc="raft eval", unit="model"):
        start = time.perf_counter()
        model = base if name == "base" else backends.get(spec)
        scores = score_model(model, base, data, config, judges)
        results[name] = {"path": spec, "scores": scores, "seconds": round(time.perf_counter() - start, 2)}
        report = add_relative_scores(results, baseline=baseline if baseline in results else "base")
        report["complete"] = len(results) == len(specs)  # the report is rewritten as each model finishes
        report["sizes"] = {
            "domain": len(data.domain_rows),
            "ifeval": len(data.ifeval),
            "probes": len(data.probes),
            "general_paragraphs": len(data.general_text),
        }
        report["judges"] = [j.name for j in judges]
        write_report(report, config.output_dir, plot=config.plot and report["complete"])
    add_to_model_cards(report)
    if config.report_to:
        logging_dir = config.logging_dir or os.path.join(config.output_dir, "runs")
        log_report(
            report, config.report_to, logging_dir, run_name=os.path.basename(os.path.normpath(config.output_dir))
        )
    return report
