"""What the `raft` subcommands share: their parser (TRL's `TrlParser` over one config class) and how they end on a
backend that keeps failing (the reason and where the saved work is, exit code 1)."""

from __future__ import annotations

import sys
from contextlib import contextmanager


def run_command(command: str, run, report) -> None:
    """`run()`, then print `report(result)`; a backend that keeps failing ends the command (exit code 1)."""
    with exit_on_backend_error(command):
        result = run()
    print(report(result))


@contextmanager
def exit_on_backend_error(command: str):
    from raft_trainer.backends import BackendError

    try:
        yield
    except BackendError as error:
        print(f"raft {command} stopped: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def config_parser(config_class, prog: str):
    """`TrlParser` over `config_class` (flags and `--config FILE.yaml`), abbreviations refused."""
    from trl import TrlParser

    return TrlParser((config_class,), prog=prog, allow_abbrev=False)
