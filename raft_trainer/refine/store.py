"""Crash-safe output of `raft refine`: an append-only JSONL of finished rows (fsynced per batch; a line cut by a kill
is dropped on reopen and its row redone) and the lock that keeps a second run out of the output folder. Whole files
(summary, run config, skipped rows) are written by `output_files`."""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from ..output_files import jsonl_text

logger = logging.getLogger(__name__)
LOCK_FILE = ".raft_refine.lock"


class OutputLockedError(RuntimeError):
    """Another process holds the output folder (`output_lock`)."""


@contextmanager
def output_lock(folder: str | os.PathLike):
    """Hold an exclusive, non-blocking lock on `folder` (an `flock` on `folder/.raft_refine.lock`) for the block.

    Raises `OutputLockedError` at once when another run holds it: two runs writing one append-only file would write
    every row twice. The lock goes with the process (a killed run leaves no stale lock). POSIX only; elsewhere the
    block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock
        yield
        return
    with open(Path(folder) / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputLockedError(
                f"another run holds {folder} (raft refine writes there now); wait for it to finish or choose another "
                "--output_dir"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class AppendOnlyJsonl:
    """Rows written once, in order, each on its own line with its `id` (`key`; `None`: rows without one, as the
    finished runs of `raft lab` in its `runs.jsonl`)."""

    def __init__(self, path: str | os.PathLike, key: str | None = "id"):
        self.path = Path(path)
        self.key = key

    def load(self) -> list[dict]:
        """The complete rows already written; a trailing partial line (a kill during a write) is cut off the file."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            logger.warning(
                "%s: dropping a partial last line (%d bytes) from an interrupted write", self.path, len(data) - end
            )
            with open(self.path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        rows = []
        for number, line in enumerate(data[:end].splitlines(), start=1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{self.path}, line {number}, is not JSON ({error}); move the file away to start over."
                ) from None
        seen: set = set()
        ids = [row.get(self.key) for row in rows] if self.key is not None else []
        repeated = [i for i in ids if i in seen or seen.add(i)]
        if repeated:
            raise ValueError(
                f"{self.path} holds {len(repeated)} row id(s) more than once (first: {repeated[0]!r}): two runs wrote "
                "into one folder. Move the file away or pass --overwrite to start over."
            )
        return rows

    def append(self, rows: list[dict]) -> None:
        """Append rows in one write, then fsync: after a crash a row is either complete or (the last one) cut."""
        if not rows:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(jsonl_text(rows))
            f.flush()
            os.fsync(f.fileno())
