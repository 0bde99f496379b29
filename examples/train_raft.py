"""Train RAFT from a per-domain recipe: Stage 1 refinement (optional, resumable), then RAFTTrainer.

    # one process (the embedded Gemma 3 270M and the recipe's bundled example data unless the recipe names others)
    python examples/train_raft.py --config examples/recipes/law_government.yaml --variant lora

    # several GPUs: DeepSpeed ZeRO-3 (or deepspeed_zero2.yaml, multi_gpu.yaml for DDP)
    accelerate launch --config_file raft_trainer/accelerate_configs/deepspeed_zero3.yaml examples/train_raft.py \\
        --config examples/recipes/law_government.yaml

Any RAFTConfig / SFTConfig / ModelConfig field given as a flag overrides the recipe (`--max_steps 10`,
`--model_name_or_path meta-llama/Llama-3.2-3B-Instruct`, `--output_dir runs/law`). `--skip_refine` trains on the
recipe's pairs as they are. Under `accelerate launch`, the main process refines first; the others then find the
finished `refined.jsonl` and reuse it. `train.global_batch_size` sets the gradient accumulation steps for the
number of processes (unless `--gradient_accumulation_steps` is given).
"""

import argparse
import os
import sys

from accelerate import PartialState
from transformers import AutoTokenizer, HfArgumentParser
from trl import ModelConfig, ScriptArguments

from raft_trainer import RAFTConfig
from raft_trainer.cli.train import main as train
from raft_trainer.recipe import gradient_accumulation_for, load_recipe, training_rows_file


def parse(argv: list[str]):
    recipe_parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    recipe_parser.add_argument("--config", required=True, help="Recipe YAML (examples/recipes/<domain>.yaml).")
    recipe_parser.add_argument("--variant", default=None, help="Recipe variant (full, lora); default: the recipe's.")
    recipe_parser.add_argument("--skip_refine", action="store_true", help="Train on the pairs without Stage 1.")
    options, overrides = recipe_parser.parse_known_args(argv)
    recipe = load_recipe(options.config)
    settings = recipe.train_settings(options.variant)
    global_batch_size = settings.pop("global_batch_size", None)
    parser = HfArgumentParser((ScriptArguments, RAFTConfig, ModelConfig))
    parser.set_defaults(**settings)
    script_args, training_args, model_args = parser.parse_args_into_dataclasses(args=overrides)
    if global_batch_size and "--gradient_accumulation_steps" not in overrides:
        training_args.gradient_accumulation_steps = gradient_accumulation_for(
            global_batch_size, training_args.per_device_train_batch_size, int(os.environ.get("WORLD_SIZE", 1))
        )
    return options, recipe, script_args, training_args, model_args


def main(argv: list[str]) -> None:
    options, recipe, script_args, training_args, model_args = parse(argv)
    state = PartialState()
    with state.main_process_first():  # the first call converts the embedded model once
        if model_args.model_name_or_path is None:
            from raft_trainer.default_model import default_model_path

            model_args.model_name_or_path = default_model_path()
        tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
        run_refine = recipe.refine.get("enabled", False) and not options.skip_refine
        script_args.dataset_name = training_rows_file(recipe, model_args.model_name_or_path,
                                                      training_args.output_dir, run_refine=run_refine,
                                                      tokenizer=tokenizer)  # fmt: skip
    train(script_args, training_args, model_args)


if __name__ == "__main__":
    main(sys.argv[1:])
