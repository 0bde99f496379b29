"""RAFTTrainer's step against SFTTrainer, TRL's SDFTTrainer (top-K logits) and DistillationTrainer, side by side,
and RAFT's step against the sum of its parts.

    python -m benchmarks.trainers                         # tiny Llama built in code (seconds)
    python -m benchmarks.trainers --model gemma           # Gemma 3 270M, the embedded default (minutes on CPU)
    python -m benchmarks.trainers --model qwen2.5-1.5b    # random-initialised Qwen2.5-1.5B-sized model (GPU)

Every trainer runs in its own process (so CPU peak memory is its own) on the same model, data (the bundled example),
per-device batch, rollout length, K and seed; gradient accumulation 1 (each trainer then samples once per optimizer
step), gradient checkpointing off, constant learning rate, fp32 on CPU / bf16 on GPU. Distillation settings are
matched where the trainer has them: forward KL, distillation temperature 1.5 and rollouts sampled at temperature 1.0;
top-K = K for RAFT and SDFT (TRL's DistillationTrainer has no top-K mode: it uses the full vocabulary). SFT samples
nothing. Reported: median optimizer-step time after warm-up, peak memory (RSS on CPU, max allocated on GPU), dataset
tokens per second (prompt + reference tokens of the step's rows ÷ step time; the same rows for every trainer), and
ratios to RAFTTrainer. The RAFT run also times its parts (inside the steps, and alone on a fixed batch) and profiles
one step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from .memory import median, peak_memory_mb, run_isolated, synchronize

TRAINERS = ("raft", "sft", "sdft", "distillation")
ROOT = Path(__file__).resolve().parents[1]
# Qwen2.5 bodies with random weights (no download). The tokenizer available offline is Gemma 3's, so the vocabulary is
# Gemma's 262,144 tokens instead of Qwen's 151,936: a larger LM head, which is where RAFT's top-K work happens.
GPU_MODELS = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, tie_word_embeddings=True),
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, tie_word_embeddings=True),
}  # fmt: skip


class StepTimer(TrainerCallback):
    """Wall time from the end of one optimizer step to the end of the next: everything a step costs, including what
    a trainer does before `on_step_begin` (RAFT samples a window's rollouts in `get_batch_samples`)."""

    def __init__(self, device):
        self.device, self.times = device, []

    def on_train_begin(self, args, state, control, **kwargs):
        synchronize(self.device)
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        now = time.perf_counter()
        self.times.append(now - self._start)
        self._start = now


def prepare_model(name: str, cache: Path) -> str:
    """A local model folder for `name`: 'tiny' (built), 'gemma' (embedded default), a GPU_MODELS entry, or a path."""
    if name == "tiny":
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import build_model, build_tokenizer

        tokenizer = build_tokenizer()
        build_model(tokenizer).save_pretrained(cache / "tiny")
        tokenizer.save_pretrained(cache / "tiny")
        return str(cache / "tiny")
    if name == "gemma":
        from raft_trainer.default_model import default_model_path

        return default_model_path()
    if name in GPU_MODELS:
        from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

        from raft_trainer.default_model import default_model_path

        path = cache / name
        tokenizer = AutoTokenizer.from_pretrained(default_model_path())
        torch.manual_seed(0)
        config = Qwen2Config(**GPU_MODELS[name], vocab_size=len(tokenizer), max_position_embeddings=4096,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(path)
        tokenizer.save_pretrained(path)
        return str(path)
    return name


def dataset_for(trainer: str):
    from datasets import Dataset

    from raft_trainer.data import load_data

    data = load_data(None)  # the bundled example: prompt / completion
    if trainer in ("raft", "sft"):
        return data
    if trainer == "sdft":
        return Dataset.from_dict(
            {"prompt": data["prompt"], "privileged_context": [c.strip() for c in data["completion"]]}
        )
    return Dataset.from_dict({"prompt": data["prompt"]})


def build_trainer(trainer: str, model: str, args, device: torch.device):
    from transformers import AutoConfig, AutoTokenizer

    from raft_trainer.teacher_prompts import DEFAULT_TEACHER_TEMPLATE

    gpu = device.type == "cuda"
    common = dict(
        output_dir=tempfile.mkdtemp(prefix=f"bench-{trainer}-"), max_steps=args.warmup + args.steps,
        per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1, learning_rate=1e-5,
        lr_scheduler_type="constant", logging_steps=1, report_to=[], save_strategy="no", use_cpu=not gpu, bf16=gpu,
        gradient_checkpointing=False, seed=0, disable_tqdm=True,
    )  # fmt: skip
    distill = dict(max_completion_length=args.max_completion_length, temperature=1.5,
                   generation_kwargs={"temperature": 1.0}, use_vllm=False)  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(model)
    dtype = {"dtype": "bfloat16" if gpu else "float32"}
    topk = min(args.topk, AutoConfig.from_pretrained(model).get_text_config().vocab_size)  # SDFT does not clip K
    if trainer == "raft":
        from raft_trainer import RAFTConfig, RAFTTrainer

        config = RAFTConfig(**common, max_length=args.max_length, max_completion_length=args.max_completion_length,
                            distillation_topk=topk,
                            distillation_temperature=1.5, temperature=1.0, model_init_kwargs=dtype,
                            teacher_model_init_kwargs=dtype)  # fmt: skip
        return RAFTTrainer(model, args=config, train_dataset=dataset_for(trainer), processing_class=tokenizer)
    if trainer == "sft":
        from trl import SFTConfig, SFTTrainer

        config = SFTConfig(**common, max_length=args.max_length, model_init_kwargs=dtype)
        return SFTTrainer(model, args=config, train_dataset=dataset_for(trainer), processing_class=tokenizer)
    if trainer == "sdft":
        from trl.experimental.sdft import SDFTConfig, SDFTTrainer

        template = DEFAULT_TEACHER_TEMPLATE.replace("{reference}", "{privileged_context}")
        config = SDFTConfig(**common, **distill, num_generations=1, distillation_mode="topk_logits",
                            distillation_topk=topk, distillation_add_tail=False, distillation_alpha=0.0,
                            teacher_model_kind="base", teacher_prompt_template=template,
                            max_prompt_length=args.max_length, model_init_kwargs=dtype)  # fmt: skip
        return SDFTTrainer(model, args=config, train_dataset=dataset_for(trainer), processing_class=tokenizer)
    from trl import DistillationConfig, DistillationTrainer

    config = DistillationConfig(**common, **distill, beta=0.0, model_init_kwargs=dtype,
                                teacher_model_init_kwargs=dtype)  # fmt: skip
    return DistillationTrainer(model, teacher_model=model, args=config, train_dataset=dataset_for(trainer),
                               processing_class=tokenizer)  # fmt: skip


def dataset_tokens_per_step(model: str, batch_size: int) -> float:
    """Mean prompt + reference tokens of one step's rows (the bundled example), the same for every trainer."""
    from transformers import AutoTokenizer

    from raft_trainer.data import load_data

    tokenizer = AutoTokenizer.from_pretrained(model)
    data = load_data(None)
    lengths = [len(tokenizer(p + c)["input_ids"]) for p, c in zip(data["prompt"], data["completion"])]
    return batch_size * sum(lengths) / len(lengths)


def run_one(trainer_name: str, model: str, args) -> dict:
    """One trainer in this process: step times, peak memory, and for RAFT its parts and a profile."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    trainer = build_trainer(trainer_name, model, args, device)
    timer = StepTimer(device)
    trainer.add_callback(timer)
    part_timer = None
    if trainer_name == "raft":
        from .parts import PartTimer

        part_timer = PartTimer(trainer, device)
        trainer.add_callback(part_timer)
    trainer.train()
    step = median(timer.times[args.warmup :])
    logs = [log for log in trainer.state.log_history if "completions/mean_length" in log]
    result = {
        "trainer": trainer_name, "median_step_s": step, "peak_memory_mb": peak_memory_mb(device),
        "tokens_per_s": dataset_tokens_per_step(model, args.batch_size) / step,
        "mean_completion_length": median([log["completions/mean_length"] for log in logs[args.warmup :]]),
        "step_times_s": timer.times,
    }  # fmt: skip
    if part_timer is not None:
        from .parts import parts_alone, profile_step

        result["in_step"] = part_timer.summary(timer.times, args.warmup)
        result["alone"] = parts_alone(trainer, args.part_repeats)
        result["profile"] = profile_step(trainer)
    return result


def format_report(result: dict) -> str:
    """The table of the trainers that ran (in `TRAINERS` order), ratios to RAFT when RAFT ran, RAFT's parts when it ran,
    and RAFT ÷ SDFT when both ran: any subset of `--trainers` is reported."""
    rows = {r["trainer"]: r for r in result["trainers"]}
    raft = rows.get("raft")
    header = (
        f"model {result['model']}, batch {result['batch_size']}, rollout ≤ {result['max_completion_length']} tokens, "
        f"K {result['topk']}, {result['device']}, {result['steps']} steps after {result['warmup']} warm-up"
    )
    columns = [
        "trainer",
        "median step (s)",
        "step / RAFT",
        "peak memory (MiB)",
        "memory / RAFT",
        "tokens/s",
        "mean rollout",
    ]
    if raft is None:  # no ratios to a trainer that did not run
        columns = [c for c in columns if not c.endswith("/ RAFT")]
    lines = [header, "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name in (n for n in TRAINERS if n in rows):
        r = rows[name]
        step, memory = [f"{r['median_step_s']:.4f}"], [f"{r['peak_memory_mb']:.0f}"]
        if raft is not None:
            step.append(f"{r['median_step_s'] / raft['median_step_s']:.2f}")
            memory.append(f"{r['peak_memory_mb'] / raft['peak_memory_mb']:.2f}")
        cells = [name, *step, *memory, f"{r['tokens_per_s']:.1f}", f"{r['mean_completion_length']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if raft is not None:
        lines += ["", *raft_parts_report(raft)]
        if "sdft" in rows:
            sdft = rows["sdft"]
            lines.append(
                f"RAFT ÷ SDFT step: {raft['median_step_s'] / sdft['median_step_s']:.2f}; "
                f"peak memory: {raft['peak_memory_mb'] / sdft['peak_memory_mb']:.2f}"
            )
    return "\n".join(lines)


def raft_parts_report(raft: dict) -> list[str]:
    """RAFT's step by part, inside real steps and alone on a fixed batch, and the step against the sum of its parts."""
    inside, alone = raft["in_step"]["parts_s"], raft["alone"]
    floor = alone["generation"] + alone["teacher_forward"] + alone["student_forward_backward"]
    with_optimizer = floor + alone["optimizer"]
    return [
        "RAFT step by part (median s): inside real steps | alone on a fixed batch",
        f"- generation: {inside['generation']:.4f} | {alone['generation']:.4f}",
        f"- teacher forward (top-K): {inside['teacher_forward']:.4f} | {alone['teacher_forward']:.4f}",
        f"- student forward + backward: {inside['student_forward'] + inside['backward']:.4f}"
        f" | {alone['student_forward_backward']:.4f}",
        f"- optimizer step: {inside['optimizer']:.4f} | {alone['optimizer']:.4f}",
        f"- rest of the step (trainer, data, metrics): {raft['in_step']['other_s']:.4f}",
        f"RAFT step {raft['median_step_s']:.4f} s ÷ sum of parts alone (generation + teacher + student "
        f"fwd/bwd) {floor:.4f} s = {raft['median_step_s'] / floor:.2f}; including the optimizer step "
        f"{with_optimizer:.4f} s: {raft['median_step_s'] / with_optimizer:.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help=f"tiny, gemma, {', '.join(GPU_MODELS)}, or a model path")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--max_completion_length", type=int, default=16)
    parser.add_argument("--max_length", type=int, default=256)
    parser.add_argument("--topk", type=int, default=512)
    parser.add_argument("--part_repeats", type=int, default=3)
    parser.add_argument(
        "--trainers", nargs="+", default=list(TRAINERS), choices=TRAINERS, help="any subset; ratios to RAFT need raft"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # TRAINER,MODEL_PATH: one trainer in this process
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.one:
        trainer, model = args.one.split(",", 1)
        print(json.dumps(run_one(trainer, model, args)))
        return
    model = prepare_model(args.model, Path(tempfile.mkdtemp(prefix="raft-bench-model-")))
    passthrough = [f"--{name}={getattr(args, name)}" for name in
                   ("steps", "warmup", "batch_size", "max_completion_length", "max_length", "topk", "part_repeats")]  # fmt: skip
    result = {key: getattr(args, key) for key in ("model", "steps", "warmup", "batch_size", "max_completion_length",
                                                  "topk")}  # fmt: skip
    result["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    result["trainers"] = [run_isolated("benchmarks.trainers", ["--one", f"{name},{model}", *passthrough])
                          for name in args.trainers]  # fmt: skip
    if args.json:  # written before the report, so that the measurements are kept whatever the report does
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(format_report(result))
    raft = next((r for r in result["trainers"] if r["trainer"] == "raft"), None)
    if raft is not None:
        print(f"\nProfile of one RAFT step (top ops by self time):\n```\n{raft['profile'].strip()}\n```")


if __name__ == "__main__":
    main()
