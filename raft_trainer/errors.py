"""The exceptions `raft_trainer` raises for a problem in what the user gave, so that callers can tell them apart.

Both are `ValueError`s (code that catches `ValueError` keeps working), and each message names the problem: the file,
line, column, field or value, and what to change. The `raft` commands print them as one line
`raft <command>: error: <message>` and exit with status 2. A server that keeps failing raises
`raft_trainer.backends.BackendError`, a refine folder in use `raft_trainer.refine.store.OutputLockedError`, an
optional package that a chosen feature needs `MissingPackageError` (an `ImportError` that says what to install), and a
checkpoint that could not be written (a full disk) `CheckpointWriteError` (an `OSError`); these exit with status 1.
"""

from __future__ import annotations

import errno
import os
import shutil


class RAFTInputError(ValueError):
    """A problem in the user's input."""


class DataError(RAFTInputError):
    """A dataset or data file that cannot be used: missing, empty, unreadable (named with its line), wrong columns,
    no usable rows, rows that do not fit the length settings."""


class ConfigError(RAFTInputError):
    """A setting that cannot be used: out of range, not finite, unknown, or in conflict with another setting."""


class MissingPackageError(ImportError):
    """An optional package that the chosen feature needs is not installed; the message says what to `pip install`
    (or what to choose instead)."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a quota, a folder gone): the message names the folder, the
    cause and the free space on that disk, instead of torch's "unexpected pos 56640 vs 56528"."""

    # What torch's and safetensors' writers say when a write fails; their own text never says why.
    WRITER_FAILURES = ("PytorchStreamWriter", "unexpected pos", "file write failed", "Error while serializing")
    DISK_FULL = ("No space left", "StorageFull", "Disk quota exceeded")
    ALMOST_FULL_BYTES = 64 * 2**20  # less free than this after a failed write: the disk is (as good as) full

    @classmethod
    def from_failure(cls, folder: str, error: BaseException) -> CheckpointWriteError | None:
        """The error to raise for `error` raised while writing the checkpoint `folder`, or `None` when `error` is no
        write failure (it is then re-raised as it is)."""
        chain, cause = [], error
        while cause is not None and len(chain) < 8:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        text = " ".join(str(e) for e in chain)
        full = any(getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) for e in chain) or any(
            s in text for s in cls.DISK_FULL
        )
        os_error = any(  # a file system's error, not a network one (pushing the checkpoint to the Hub)
            isinstance(e, OSError) and e.errno is not None and not isinstance(e, (ConnectionError, TimeoutError))
            for e in chain
        )
        if not (full or os_error or any(s in text for s in cls.WRITER_FAILURES)):
            return None
        existing = os.path.abspath(folder)
        while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        try:
            free = shutil.disk_usage(existing).free
        except OSError:
            free = None
        full = full or (free is not None and free < cls.ALMOST_FULL_BYTES)
        space = "free space unknown" if free is None else f"{free / 2**20:,.1f} MiB free on that disk"
        reason = "the disk is full" if full else "the write failed"
        advice = (
            "; free space or choose an --output_dir on a larger disk (--save_total_limit keeps fewer checkpoints)"
            if full
            else ""
        )
        return cls(
            f"Could not save the checkpoint {folder}: {reason} ({type(error).__name__}: {error}; {space}). Earlier "
            f"checkpoints are untouched; {folder} is incomplete: delete it before resuming (resume takes the newest "
            f"checkpoint folder){advice}."
        )
