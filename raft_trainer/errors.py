"""The exceptions `raft_trainer` raises for a problem in what the user gave, so that callers can tell them apart.

Both are `ValueError`s (code that catches `ValueError` keeps working), and each message names the problem: the file,
line, column, field or value, and what to change. The `raft` commands print them as one line
`raft <command>: error: <message>` and exit with status 2. A server that keeps failing raises
`raft_trainer.backends.BackendError`, a refine folder in use `raft_trainer.refine.store.OutputLockedError`, and an
optional package that a chosen feature needs `MissingPackageError` (an `ImportError` that says what to install; exit 1).
"""

from __future__ import annotations


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
