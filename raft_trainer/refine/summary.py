"""End-of-run summary of a refined file: acceptance rate, similarity distribution, fusion rounds, judge scores,
fallbacks and why, replies cut at the token limit, skipped rows and why, tokens generated, wall time."""

from __future__ import annotations

from collections import Counter
from statistics import mean, median


def _quantiles(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

    histogram = Counter(min(9, max(0, int(v * 10))) for v in values)
    return {
        "count": len(values),
        "mean": round(mean(values), 4),
        "min": round(ordered[0], 4),
        "p10": at(0.1),
        "p25": at(0.25),
        "median": round(median(values), 4),
        "p75": at(0.75),
        "p90": at(0.9),
        "max": round(ordered[-1], 4),
        "histogram": {f"{b / 10:.1f}-{(b + 1) / 10:.1f}": histogram.get(b, 0) for b in range(10)},
    }


def summarize(records: list[dict], skipped: list[dict], *, wall_time: float, rows_this_run: int) -> dict:
    """Statistics over every refined row (resumed runs included) and the rows skipped."""
    provenance = [r["provenance"] for r in records]
    accepted = [p for p in provenance if p["status"] == "accepted"]
    fused = [p for p in accepted if p["fusion_rounds"]]
    judge_scores = [s for p in fused for c in p["candidates"] for s in c["scores"] if s is not None]
    unparsed = sum(s is None for p in fused for c in p["candidates"] for s in c["scores"])
    tokens = Counter()
    for p in provenance:
        tokens.update(p["tokens"])
    # rows written before these fields existed count as not cut, with no recorded reason
    reasons = Counter(p["fallback_reason"] for p in provenance if p.get("fallback_reason"))
    return {
        "rows_refined": len(records),
        "rows_skipped": len(skipped),
        "skipped_reasons": dict(Counter(s["reason"].split(" (")[0] for s in skipped)),
        "acceptance_rate": round(len(accepted) / len(records), 4) if records else None,
        "similarity": _quantiles([p["similarity"] for p in provenance]),
        "completion_source": dict(Counter(p["source"] for p in provenance)),
        "fallback_reasons": dict(sorted(reasons.items())),
        "truncated": {
            "rewrites": sum(bool(p.get("rewrite_truncated")) for p in provenance),
            "fusion_candidates": sum(p.get("truncated_candidates", 0) for p in provenance),
        },
        "fusion_rounds": dict(sorted(Counter(p["fusion_rounds"] for p in fused).items())),
        "stopped_early": sum(1 for p in fused if p["best_score"] is not None and p["best_score"] >= p["stop_score"]),
        "judge_scores": {**_quantiles(judge_scores), "unparseable": unparsed},
        "selected_scores": _quantiles([p["best_score"] for p in fused if p["best_score"] is not None]),
        "tokens_generated": dict(tokens),
        "wall_time_s": round(wall_time, 2),
        "rows_this_run": rows_this_run,
        "rows_per_s_this_run": round(rows_this_run / wall_time, 4) if wall_time > 0 else None,
    }


def format_summary(summary: dict) -> str:
    """A short human-readable block for the end of `raft refine`."""
    similarity = summary["similarity"]
    judges = summary["judge_scores"]
    lines = [
        f"refined {summary['rows_refined']} rows ({summary['rows_this_run']} this run, "
        f"{summary['rows_per_s_this_run']} rows/s, {summary['wall_time_s']} s); skipped {summary['rows_skipped']}"
        + (f" {summary['skipped_reasons']}" if summary["skipped_reasons"] else ""),
        f"acceptance rate (similarity >= tau): {summary['acceptance_rate']}; similarity median "
        f"{similarity.get('median')}, p10 {similarity.get('p10')}, p90 {similarity.get('p90')}",
        f"completion source: {summary['completion_source']}; fusion rounds: {summary['fusion_rounds']}; "
        f"stopped early: {summary['stopped_early']}",
        f"fallbacks: {summary['fallback_reasons']}; cut at the token limit (never used as ŷ): "
        f"{summary['truncated']['rewrites']} rewrites, {summary['truncated']['fusion_candidates']} fused answers",
        f"judge scores: mean {judges.get('mean')}, median {judges.get('median')}, unparseable {judges['unparseable']}",
        f"tokens generated: {summary['tokens_generated']}",
    ]
    return "\n".join(lines)
