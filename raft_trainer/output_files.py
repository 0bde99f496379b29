"""Result files written whole: a reader, or a run killed mid-write, sees the old content or the new one, never half of
one (temp file, fsync, rename). Used by `raft refine`, `raft eval` and `raft lab` for their JSON, JSONL and markdown
outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a file so that a reader sees the old content or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike, value) -> None:
    write_text_atomic(path, json.dumps(value, indent=1, ensure_ascii=False) + "\n")


def jsonl_text(rows: list[dict]) -> str:
    """One JSON object a line, non-ASCII text kept as written."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_jsonl_atomic(path: str | os.PathLike, rows: list[dict]) -> None:
    write_text_atomic(path, jsonl_text(rows))
