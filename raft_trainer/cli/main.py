"""`raft` entry point: `raft <command> [--config recipe.yaml] [--flag value ...]`."""

from __future__ import annotations

import os
import sys

from ..backends import BackendError
from ..errors import CheckpointWriteError, MissingPackageError
from ..refine.store import OutputLockedError
from . import eval as evaluate
from . import lab, refine, train

INPUT_ERRORS = (ValueError, FileNotFoundError)  # the user's input: exit 2, as argparse does for a bad flag
# a server that kept failing, a folder in use, a package to install, a checkpoint the disk had no room for: exit 1
RUN_ERRORS = (BackendError, OutputLockedError, MissingPackageError, CheckpointWriteError)
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
    if argv[0] == "train" and any(a.split("=", 1)[0] == "--accelerate_config" for a in argv[1:]):
        raise SystemExit(launch_with_accelerate(argv[1:]))
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


ACCELERATE_CONFIGS = {"zero2": "deepspeed_zero2.yaml", "zero3": "deepspeed_zero3.yaml", "multi_gpu": "multi_gpu.yaml"}


def launch_with_accelerate(args: list[str]) -> int:
    """`raft train --accelerate_config zero2|zero3|multi_gpu|FILE.yaml [accelerate flags] [train flags]`: run
    `accelerate launch` with a packaged config (`raft_trainer/accelerate_configs/`) or your own, on `raft train`.

    Flags that `accelerate launch` has and `raft train` lacks (`--num_processes`, `--main_process_port`,
    `--num_machines`, ...) go to accelerate; every other flag goes to `raft train`. Returns accelerate's exit code.
    """
    import subprocess
    from importlib import resources

    from accelerate.commands.launch import launch_command_parser

    config, rest, i = None, [], 0
    while i < len(args):
        flag, _, value = args[i].partition("=")
        if flag == "--accelerate_config":
            config = value or (args[i + 1] if i + 1 < len(args) else "")
            i += 1 if value else 2
            continue
        rest.append(args[i])
        i += 1
    if config in ACCELERATE_CONFIGS:
        config = str(resources.files("raft_trainer") / "accelerate_configs" / ACCELERATE_CONFIGS[config])
    elif not os.path.isfile(config or ""):
        raise SystemExit(
            f"raft train: error: --accelerate_config takes {' | '.join(ACCELERATE_CONFIGS)} or a YAML "
            f"file; got {config!r}"
        )
    train_flags = {o for a in train.make_parser()._actions for o in a.option_strings} | {"--config"}
    accelerate_flags = {o for a in launch_command_parser()._actions for o in a.option_strings} - train_flags
    launcher, trainer = [], []
    target = trainer
    for arg in rest:  # a flag's values follow it to the same side
        if arg.startswith("-"):
            target = launcher if arg.split("=", 1)[0] in accelerate_flags else trainer
        target.append(arg)
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        config,
        *launcher,
        "-m",
        "raft_trainer.cli.main",
        "train",
        *trainer,
    ]
    print("raft train: " + " ".join(command), file=sys.stderr)
    return subprocess.call(command)


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
    for name in (
        "torch",
        "transformers",
        "trl",
        "accelerate",
        "datasets",
        "peft",
        "deepspeed",
        "vllm",
        "openai",
        "sentence-transformers",
        "lm-eval",
    ):
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
