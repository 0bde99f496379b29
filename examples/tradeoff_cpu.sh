#!/usr/bin/env bash
# SFT vs RAFT on the first 160 refined world-facts rows, then `raft eval` of base, SFT and RAFT with the last 40 gold
# pairs held out (docs/evaluation.md, "A measured evaluation"). About 45 min on a 2-core CPU.
# Needs runs/refine_world_facts from: raft refine --config examples/refine/world_facts_gemma.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/tradeoff
python - <<'PY'
import json
refined = [json.loads(line) for line in open("runs/refine_world_facts/refined.jsonl")]
gold = [json.loads(line) for line in open("examples/data/world_facts_qa.jsonl")]
with open("runs/tradeoff/train_refined.jsonl", "w") as f:
    f.writelines(json.dumps({"prompt": r["prompt"], "completion": r["completion"]}) + "\n" for r in refined[:160])
with open("runs/tradeoff/heldout.jsonl", "w") as f:
    f.writelines(json.dumps(g) + "\n" for g in gold[160:])
PY
COMMON="--dataset_name runs/tradeoff/train_refined.jsonl --num_train_epochs 1 --per_device_train_batch_size 8
  --learning_rate 5e-5 --max_completion_length 32 --max_length 128 --logging_steps 5 --save_strategy no --report_to none"
raft train $COMMON --use_distillation false --output_dir runs/tradeoff/sft
raft train $COMMON --output_dir runs/tradeoff/raft
raft eval --models sft=runs/tradeoff/sft raft=runs/tradeoff/raft --baseline sft \
  --domain_dataset runs/tradeoff/heldout.jsonl --output_format plain \
  --judge_models "${RAFT_CACHE_DIR:-$HOME/.cache/raft_trainer}/gemma-3-270m" --output_dir runs/tradeoff/eval
