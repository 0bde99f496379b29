"""Write the bundled IFEval prompt set (raft_trainer/eval/data/ifeval_prompts.jsonl) from the upstream checkers.

    python dev/build_ifeval_prompts.py

`google/IFEval` itself lives on the Hub; this set is generated the way IFEval's prompts were seeded: a short
writing task followed by the instruction text that each upstream checker's `build_description()` writes for
random arguments (if-verifiable's `INSTRUCTION_DICT`, the 25 IFEval types). Rows have IFEval's columns (`key`,
`prompt`, `instruction_id_list`, `kwargs`), so `--ifeval_dataset google/IFEval` is a drop-in replacement.

* rows 0-24: one instruction each, every type once, in registry order (the lab scores these: `ifeval_limit: 25`);
* rows 25-49: two instructions each, a pair IFEval allows together (`INSTRUCTION_CONFLICTS`).

Fixed seeds: running it again writes the same file (tests/test_ifeval.py checks that).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from if_verifiable.ifeval.instructions_registry import INSTRUCTION_CONFLICTS, INSTRUCTION_DICT, conflict_make

OUT = Path(__file__).resolve().parents[1] / "raft_trainer" / "eval" / "data" / "ifeval_prompts.jsonl"

TASKS = [
    "Write a short note to a neighbour about a lost cat.",
    "Describe a sunrise over the sea.",
    "Give advice to someone starting to learn the guitar.",
    "Write a short product description for a reusable water bottle.",
    "Explain why people enjoy walking in the rain.",
    "Write a thank-you message to a teacher.",
    "Describe your ideal weekend.",
    "Write a short story about a robot that learns to paint.",
    "Explain how to make a cup of tea.",
    "Write an invitation to a birthday party in the park.",
    "Describe a busy market on a Saturday morning.",
    "Give three tips for staying focused while studying.",
    "Write a short review of a café you imagine visiting.",
    "Explain what a library is to a child.",
    "Write a motivational message for a football team before a match.",
    "Describe the sound of a forest at night.",
    "Write an email asking a colleague to reschedule a meeting.",
    "Explain why sleep is important.",
    "Write a short poem about autumn leaves.",
    "Describe a train journey through the mountains.",
    "Write a note apologising for missing a friend's dinner.",
    "Give a recipe idea for a quick vegetable soup.",
    "Explain how bicycles help cities.",
    "Write a welcome message for new members of a chess club.",
    "Describe what you would pack for a day at the beach.",
]


def instruction(name: str, task: str, rng_seed: int) -> tuple[str, dict]:
    """The checker's instruction text and the arguments it drew (seeded: the same seed gives the same pair)."""
    random.seed(rng_seed)
    checker = INSTRUCTION_DICT[name](name)
    text = checker.build_description(**({"prompt_to_repeat": task} if name == "combination:repeat_prompt" else {}))
    return text, {k: v for k, v in (checker.get_instruction_args() or {}).items() if v is not None}


def row(key: int, task: str, names: list[str]) -> dict:
    parts = [instruction(name, task, rng_seed=key * 100 + i) for i, name in enumerate(names)]
    return {
        "key": key,
        "prompt": " ".join([task, *(text for text, _ in parts)]),
        "instruction_id_list": names,
        "kwargs": [kwargs for _, kwargs in parts],
    }


def build() -> list[dict]:
    names = list(INSTRUCTION_DICT)
    rows = [row(key, TASKS[key % len(TASKS)], [name]) for key, name in enumerate(names)]
    conflicts = conflict_make({k: set(v) for k, v in INSTRUCTION_CONFLICTS.items()})
    pairs = random.Random(0)
    while len(rows) < 2 * len(names):
        first, second = pairs.sample(names, 2)
        if second not in conflicts[first] and "combination:repeat_prompt" not in (first, second):
            key = len(rows)
            rows.append(row(key, TASKS[(key * 7) % len(TASKS)], [first, second]))
    return rows


def render(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


if __name__ == "__main__":
    OUT.write_text(render(build()), encoding="utf-8")
    print(f"wrote {OUT}")
