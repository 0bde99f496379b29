"""`refine()`: Stage 1 end to end, batch by batch. Each finished batch is appended to `refined.jsonl`; a run started
again with the same settings skips the rows already there and recomputes a cut batch whole, so its rows come out the
same as in an uninterrupted run (fixed batches, per-batch seeds)."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..backends import BackendError, BackendPool, GenerationBackend, SamplingSettings, strip_reasoning
from ..output_files import write_json_atomic, write_jsonl_atomic
from ..prompt_files import PromptTemplate, load_prompt
from ..qa_rows import QARow, read_rows, resolve_output_format
from .config import RefineConfig
from .fusion import FusionResult, FusionStep
from .similarity import SemanticFilter
from .store import AppendOnlyJsonl, output_lock
from .summary import summarize

OUTPUT_FILES = ("refined.jsonl", "summary.json", "skipped.jsonl", "run_config.json")


@dataclass
class Refiner:
    """The three steps for one batch of rows: rewrite with the backbone, filter by similarity, fuse and judge.

    Every reply has its reasoning blocks stripped (`backends.strip_reasoning`) before it is compared, judged or
    stored. A reply cut at the token limit is never ŷ: a cut rewrite falls back to y (`fallback_reason:
    "rewrite_truncated"`) and is not fused; a cut fused answer is not judged, and when every round's answer was cut,
    ŷ is the rewrite (`fallback_reason: "fusion_truncated"`).
    """

    rewriter: GenerationBackend
    rewrite_prompt: PromptTemplate
    rewrite_settings: SamplingSettings
    semantic_filter: SemanticFilter
    fusion: FusionStep | None
    provenance_base: dict

    def refine_batch(self, rows: list[QARow], seed: int) -> list[dict]:
        prompts = [self.rewrite_prompt.render(question=r.question, answer=r.answer) for r in rows]
        rewrites = self.rewriter.generate(prompts, replace(self.rewrite_settings, seed=seed))
        texts = [strip_reasoning(g.text) for g in rewrites]
        similarities = self.semantic_filter.similarities([r.answer for r in rows], texts)
        accepted = [
            i for i, s in enumerate(similarities) if self.semantic_filter.accepts(s) and not rewrites[i].truncated
        ]
        fused: dict[int, FusionResult] = {}
        if self.fusion is not None and accepted:
            results = self.fusion(
                [rows[i].question for i in accepted],
                [rows[i].answer for i in accepted],
                [texts[i] for i in accepted],
                seed=seed,
            )
            fused = dict(zip(accepted, results))
        records = []
        for i, row in enumerate(rows):
            fusion = fused.get(i)
            status, reason = ("accepted" if i in accepted else "fallback"), None
            if status == "fallback":
                text, source = row.answer, "gold"
                reason = "rewrite_truncated" if rewrites[i].truncated else "low_similarity"
            elif fusion is not None and fusion.fused is not None:
                text, source = fusion.fused, "fusion"
            else:  # fusion off, or no candidate could be selected
                text, source = texts[i], "rewrite"
                if fusion is not None:
                    cut = all(c.truncated for c in fusion.candidates)
                    reason = "fusion_truncated" if cut else "fusion_unscored"
            best = fusion.best if fusion else None
            provenance = {
                "gold": row.answer,
                "rewrite": texts[i],
                "rewrite_truncated": rewrites[i].truncated,
                "similarity": similarities[i],
                "status": status,
                "source": source,
                "fallback_reason": reason,
                "fusion_rounds": len(fusion.candidates) if fusion else 0,
                "candidates": [{**vars(c), "mean_score": c.mean_score} for c in fusion.candidates] if fusion else [],
                "truncated_candidates": sum(c.truncated for c in fusion.candidates) if fusion else 0,
                "best_score": best.mean_score if best else None,
                "tokens": {
                    "rewrite": rewrites[i].num_tokens,
                    **(fusion.tokens if fusion else {"fusion": 0, "judge": 0}),
                },
                **self.provenance_base,
            }
            records.append(row.training_record(text, provenance))
        return records


def build_refiner(
    config: RefineConfig, backends: BackendPool, semantic_filter: SemanticFilter | None = None
) -> Refiner:
    """Load (once) the models and prompts `config` names."""
    from ..default_model import default_model_path

    rewrite_spec = config.rewrite_model or default_model_path()
    fusion_spec = config.fusion_model or rewrite_spec
    judge_specs = config.judge_models or [fusion_spec]
    stop = tuple(config.stop_sequences)
    semantic_filter = semantic_filter or SemanticFilter(
        config.embedding_model, config.similarity_threshold, config.embedding_device
    )
    prompts = {
        role: load_prompt(role, getattr(config, f"{role}_prompt_file")) for role in ("rewrite", "fusion", "judge")
    }
    fusion = None
    if config.fusion:
        fusion = FusionStep(
            fuser=backends.get(fusion_spec),
            judges=[backends.get(s) for s in judge_specs],
            fusion_prompt=prompts["fusion"],
            judge_prompt=prompts["judge"],
            fusion_settings=SamplingSettings(
                config.fusion_max_new_tokens, config.fusion_temperature, config.fusion_top_p, stop
            ),
            judge_settings=SamplingSettings(config.judge_max_new_tokens, 0.0, 1.0, stop + ("\n",) if stop else ()),
            rounds=config.fusion_rounds,
            stop_score=config.judge_stop_score,
            judge_retries=config.judge_retries,
        )
    rewriter = backends.get(rewrite_spec)
    models = {
        "rewrite": rewriter.name,
        "embedding": semantic_filter.name,
        "fusion": fusion.fuser.name if fusion else None,
        "judges": [j.name for j in fusion.judges] if fusion else [],
    }
    versions = {role: p.version for role, p in prompts.items() if role == "rewrite" or fusion}
    return Refiner(
        rewriter,
        prompts["rewrite"],
        SamplingSettings(config.rewrite_max_new_tokens, config.rewrite_temperature, config.rewrite_top_p, stop),
        semantic_filter,
        fusion,
        {
            "threshold": config.similarity_threshold,
            "stop_score": config.judge_stop_score,
            "models": models,
            "prompt_versions": versions,
        },
    )


def _with_concrete_output_format(config: RefineConfig, backends: BackendPool | None) -> RefineConfig:
    """`output_format="auto"` decided by the rewrite model's tokenizer (what is stored and compared on resume)."""
    if config.output_format != "auto":
        return config
    from ..default_model import default_model_path

    spec = config.rewrite_model or default_model_path()
    config = copy.copy(config)
    config.output_format = resolve_output_format("auto", spec, config.api, backends.built(spec) if backends else None)
    return config


def _check_or_write_run_config(path: Path, config: RefineConfig) -> None:
    import json

    outcome = json.loads(json.dumps(config.outcome_fields()))
    if path.exists():
        previous = json.loads(path.read_text())["outcome"]
        # A setting newer than the stored run counts as its default there (it did not exist, so it behaved as such).
        defaults = json.loads(json.dumps({f.name: _default(f) for f in fields(config) if f.name in outcome}))
        previous = {k: previous.get(k, defaults.get(k)) for k in outcome}
        changed = {k: (previous[k], v) for k, v in outcome.items() if previous[k] != v}
        if changed:
            shown = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise ValueError(
                f"{path.parent} holds a run with other settings ({shown}). Pass --overwrite to start over, or choose "
                f"another --output_dir; the rows already there were not touched."
            )
        return
    from .. import __version__

    write_json_atomic(path, {"raft_trainer_version": __version__, "outcome": outcome})


def _default(field):
    from dataclasses import MISSING

    return field.default_factory() if field.default_factory is not MISSING else field.default


def refine(
    config: RefineConfig,
    dataset=None,
    *,
    backends: BackendPool | None = None,
    semantic_filter: SemanticFilter | None = None,
) -> dict:
    """Refine `dataset` (default: the one `config` names) into `config.output_dir`; returns the summary.

    Args:
        config (`RefineConfig`): every option.
        dataset (`datasets.Dataset`, *optional*): overrides `config.dataset_name`.
        backends (`BackendPool`, *optional*): prebuilt backends by spec (tests, or models already in memory).
        semantic_filter (`SemanticFilter`, *optional*): a prebuilt filter.
    """
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    with output_lock(output):
        return _refine_into(output, config, dataset, backends, semantic_filter)


def _refine_into(output: Path, config: RefineConfig, dataset, backends, semantic_filter) -> dict:
    from tqdm.auto import tqdm

    from ..data import load_data

    start = time.perf_counter()
    if dataset is None:  # read (and checked) before any model is touched
        dataset = load_data(config.dataset_name, config.dataset_config, config.dataset_split)
    config = _with_concrete_output_format(config, backends)
    if config.overwrite:
        for name in OUTPUT_FILES:
            (output / name).unlink(missing_ok=True)
    _check_or_write_run_config(output / "run_config.json", config)
    rows, skipped = read_rows(dataset, config, config.max_rows)
    write_jsonl_atomic(output / "skipped.jsonl", skipped)
    store = AppendOnlyJsonl(output / "refined.jsonl")
    records = store.load()
    done = {r["id"] for r in records}
    batches = [rows[i : i + config.batch_size] for i in range(0, len(rows), config.batch_size)]
    pending = [(b, batch) for b, batch in enumerate(batches) if any(r.id not in done for r in batch)]
    written = 0
    if pending:
        refiner = build_refiner(config, backends or BackendPool(config.backend_options()), semantic_filter)
        bar = tqdm(
            total=len(rows),
            initial=sum(r.id in done for r in rows),
            unit="row",
            desc="raft refine",
            dynamic_ncols=True,
        )
        try:
            for batch_index, batch in pending:
                batch_records = refiner.refine_batch(batch, seed=config.seed + batch_index)
                new = [r for r in batch_records if r["id"] not in done]
                store.append(new)
                records.extend(new)
                written += len(new)
                bar.update(len(new))
        except BackendError as error:
            raise BackendError(
                f"{error}\n{len(done) + written} refined rows are saved in {store.path}; run the same command again to resume."
            ) from error
        finally:
            bar.close()
    summary = summarize(records, skipped, wall_time=time.perf_counter() - start, rows_this_run=written)
    write_json_atomic(output / "summary.json", summary)
    return summary
