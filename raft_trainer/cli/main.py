"""`raft` entry point: `raft <command> [--config recipe.yaml] [--flag value ...]`."""

from __future__ import annotations

import os
import sys

from ..backends import BackendError
from ..refine.store import OutputLockedError
from . import eval as evaluate
from . import lab, refine, train

USER_ERRORS = (ValueError, FileNotFoundError, BackendError, OutputLockedError)
COMMANDS = {"eval": evaluate, "lab": lab, "refine": refine, "train": train}
USAGE = (
    "usage: raft <command> [--config FILE.yaml] [<args>]\n\ncommands:\n"
    "  refine   Stage 1: rewrite, filter and fuse a (question, answer) dataset\n"
    "  train    Stage 2: fine-tune with RAFT (RAFTTrainer)\n"
    "  eval     domain accuracy and general-ability retention of checkpoints vs the base model\n"
    "  lab      the paper's comparison (SFT, on-policy, RAFT, ...) end to end on one model, with a report\n"
)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(USAGE)
        raise SystemExit(0)
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"raft: unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    try:
        command.main(*command.make_parser().parse_args_and_config(args=argv[1:]))
    except USER_ERRORS as error:  # bad input, a busy folder, a server that kept failing: one line, no traceback
        if os.environ.get("RAFT_TRACEBACK"):
            raise
        print(f"raft {argv[0]}: error: {error}\n(set RAFT_TRACEBACK=1 to see where it was raised)", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
