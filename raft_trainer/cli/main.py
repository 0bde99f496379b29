"""`raft` entry point: `raft <command> [--config recipe.yaml] [--flag value ...]`."""

from __future__ import annotations

import os
import sys

from ..backends import BackendError
from ..refine.store import OutputLockedError
from . import eval as evaluate
from . import lab, refine, train

INPUT_ERRORS = (ValueError, FileNotFoundError)  # the user's input: exit 2, as argparse does for a bad flag
RUN_ERRORS = (BackendError, OutputLockedError)  # a server that kept failing, a folder in use: exit 1
COMMANDS = {"eval": evaluate, "lab": lab, "refine": refine, "train": train}
USAGE = (
    "usage: raft <command> [--config FILE.yaml] [<args>]\n       raft --version | raft env\n\ncommands:\n"
    "  refine   Stage 1: rewrite, filter and fuse a (question, answer) dataset\n"
    "  train    Stage 2: fine-tune with RAFT (RAFTTrainer)\n"
    "  eval     domain accuracy and general-ability retention of checkpoints vs the base model\n"
    "  lab      the paper's comparison (SFT, on-policy, RAFT, ...) end to end on one model, with a report\n"
    "  env      versions of the stack and the devices, for bug reports\n"
)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(USAGE)
        raise SystemExit(0)
    if argv[0] in {"--version", "-V"}:
        print(f"raft_trainer {version()}")
        raise SystemExit(0)
    if argv[0] == "env":
        print(environment())
        raise SystemExit(0)
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"raft: unknown command {argv[0]!r}{did_you_mean(argv[0], COMMANDS)}\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    try:
        parser = command.make_parser()
        check_flags(parser, argv[1:])
        command.main(*parser.parse_args_and_config(args=argv[1:]))
    except (*INPUT_ERRORS, *RUN_ERRORS) as error:  # one line naming the problem, no traceback
        if os.environ.get("RAFT_TRACEBACK"):
            raise
        print(f"raft {argv[0]}: error: {error}\n(set RAFT_TRACEBACK=1 to see where it was raised)", file=sys.stderr)
        raise SystemExit(2 if isinstance(error, INPUT_ERRORS) else 1) from None


def check_flags(parser, args: list[str]) -> None:
    """Raise `ValueError` for a flag the command does not have, with the closest ones (argparse would accept an
    abbreviation, and `HfArgumentParser` reports leftovers only after parsing, without a suggestion)."""
    known = {"--config"} | {option for action in parser._actions for option in action.option_strings}
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag.startswith("--") and flag not in known:
            shown = {
                o
                for o in known
                if o[:2] + o[2:].replace("-", "_") == o or o[:2] + o[2:].replace("-", "_") not in known
            }
            raise ValueError(f"unknown flag {flag}{did_you_mean(flag, shown)} (see --help)")


def did_you_mean(word: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=3, cutoff=0.75)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("raft_trainer")
    except PackageNotFoundError:
        return "unknown (not installed)"


def environment() -> str:
    """The versions that decide RAFT's behaviour and the devices torch sees, one per line."""
    import platform
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    import torch

    lines = [f"raft_trainer: {version()}", f"Python: {platform.python_version()} ({platform.platform()})"]
    for name in ("torch", "transformers", "trl", "accelerate", "datasets", "peft", "deepspeed", "vllm", "openai",
                 "sentence-transformers", "lm-eval"):  # fmt: skip
        try:
            lines.append(f"{name}: {package_version(name)}")
        except PackageNotFoundError:
            lines.append(f"{name}: not installed")
    if torch.cuda.is_available():
        devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        lines.append(f"CUDA {torch.version.cuda}: {len(devices)} GPU(s): {', '.join(devices)}")
    else:
        lines.append(f"devices: CPU only ({os.cpu_count()} cores)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
