"""How `raft` subcommands end on a backend that keeps failing: the reason and where the saved work is, exit code 1."""

from __future__ import annotations

import sys
from contextlib import contextmanager


@contextmanager
def exit_on_backend_error(command: str):
    from raft_trainer.backends import BackendError

    try:
        yield
    except BackendError as error:
        print(f"raft {command} stopped: {error}", file=sys.stderr)
        raise SystemExit(1) from None
