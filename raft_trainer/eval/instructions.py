"""IFEval's verifiable instructions (Zhou et al. 2023, arXiv:2311.07911), checked by the upstream checkers.

The checks are Google's `instruction_following_eval` code as packaged by `if-verifiable` (Apache-2.0): its registry
`INSTRUCTION_DICT` (the 25 instruction types of `google/IFEval`), its checker classes, and its strict/loose
evaluation (`if_verifiable.common.evaluate_instructions`: strict checks the response as written; loose also accepts
the response without its first line, its last line, both, or its markdown asterisks). Nothing is re-implemented here;
this module only aggregates the four numbers IFEval reports and says which instructions it could not check:

* an id outside the registry (a typo, an IFBench id) is counted in `instructions_unsupported`;
* `kwargs` that the checker would fail on are refused when the rows are read, before any model loads
  (`kwargs_problem`): a key its `build_description` does not take, a value of another type than the one upstream
  picks itself when the key is left out (`"300"` where upstream uses an integer), or a value it refuses
  (`relation: "more than"`);
* `length_constraints:number_sentences` and `change_case:capital_word_frequency` split sentences with NLTK's Punkt
  model, which NLTK downloads separately (`python -m nltk.downloader punkt punkt_tab`); without it they are counted
  in `instructions_unsupported` too, with one warning, instead of failing the whole evaluation.

Language detection (`language:response_language`, `change_case:english_*`) is seeded (`DetectorFactory.seed = 0`)
as upstream does, so scores repeat exactly.
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
from collections import Counter

import langdetect
from if_verifiable.common import evaluate_instructions
from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

logger = logging.getLogger(__name__)
langdetect.DetectorFactory.seed = 0

# instruction id -> kwargs that make the checker run NLTK's sentence tokenizer once (the availability probe)
NEEDS_NLTK_DATA = {
    "length_constraints:number_sentences": {"num_sentences": 1, "relation": "at least"},
    "change_case:capital_word_frequency": {"capital_frequency": 1, "capital_relation": "at least"},
}


@functools.cache
def unsupported_reason(instruction_id: str) -> str | None:
    """Why `instruction_id` cannot be checked here, or `None` when it can."""
    if instruction_id not in INSTRUCTION_DICT:
        return "not an IFEval instruction id"
    if instruction_id in NEEDS_NLTK_DATA:
        checker = INSTRUCTION_DICT[instruction_id](instruction_id)
        checker.build_description(**NEEDS_NLTK_DATA[instruction_id])
        try:
            checker.check_following("One sentence. Two sentences.")
        except LookupError:
            return "needs NLTK's Punkt data (python -m nltk.downloader punkt punkt_tab)"
    return None


# A response the checkers are tried on when the rows are read (`kwargs_problem`): a wrong argument fails here, not
# after the model has generated.
SAMPLE_RESPONSE = "A sample response, in English, with *two* paragraphs.\n\nThe second one ends here. P.S. Thanks."
TYPE_NAMES = {int: "an integer", str: "a string", list: "a list of strings"}


@functools.cache
def checker_arguments(instruction_id: str) -> dict[str, type | None]:
    """The keyword arguments the upstream checker of `instruction_id` takes (its `build_description` parameters),
    each with the type of the value upstream picks itself when the argument is left out (`None`: it picks none, as
    for `combination:repeat_prompt`'s `prompt_to_repeat`). Read from the checker, so it follows upstream."""
    checker = INSTRUCTION_DICT[instruction_id](instruction_id)
    parameters = inspect.signature(checker.build_description).parameters.values()
    names = [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    state = random.getstate()  # upstream picks left-out values with the global `random`: leave its sequence alone
    try:
        checker.build_description()
        picked = checker.get_instruction_args() or {}
    except ValueError:  # an argument upstream cannot pick ("prompt_to_repeat must be set.")
        picked = {}
    finally:
        random.setstate(state)
    return {name: None if picked.get(name) is None else type(picked[name]) for name in names}


def _has_type(value, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is list:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return isinstance(value, kind)


def kwargs_problem(instruction_id: str, kwargs: dict | None) -> str | None:
    """Why the upstream checker of `instruction_id` would fail on `kwargs` (one IFEval row's arguments for it), or
    `None` when it would not (or when the instruction is left out anyway, `unsupported_reason`).

    Checked in this order: a key the checker does not take; a value whose type differs from the one upstream picks
    when the key is left out (`checker_arguments`); then the checker is built with `kwargs` and run on a sample
    response, which catches values upstream refuses (`relation: "more than"`) and wrong types of arguments upstream
    never picks. `None` values are dropped first, as upstream's evaluation drops them.

    ```python
    >>> kwargs_problem("length_constraints:number_words", {"num_words": "300", "relation": "less than"})
    "'num_words' must be an integer, got the str '300'"

    ```
    """
    if instruction_id not in INSTRUCTION_DICT or unsupported_reason(instruction_id) is not None:
        return None
    expected = checker_arguments(instruction_id)
    given = {key: value for key, value in (kwargs or {}).items() if value is not None}
    for key, value in given.items():
        if key not in expected:
            return f"{key!r} is not an argument of this instruction's checker (it takes {sorted(expected)})"
        kind = expected[key]
        if kind is not None and not _has_type(value, kind):
            return f"{key!r} must be {TYPE_NAMES.get(kind, kind.__name__)}, got the {type(value).__name__} {value!r}"
    state = random.getstate()
    try:
        checker = INSTRUCTION_DICT[instruction_id](instruction_id)
        checker.build_description(**given)
        checker.check_following(SAMPLE_RESPONSE)
    except LookupError:  # NLTK data: reported by `unsupported_reason`
        return None
    except Exception as error:  # noqa: BLE001 - any failure of the checker here would end the run after generation
        return f"the checker fails on {given}: {type(error).__name__}: {error}"
    finally:
        random.setstate(state)
    return None


def check_instructions(
    response: str, instruction_ids: list[str], kwargs: list[dict | None], prompt: str = ""
) -> list[tuple[bool, bool] | None]:
    """`(strict, loose)` for each instruction of one IFEval prompt, `None` for one that cannot be checked here.

    Args:
        response (`str`): the model's response.
        instruction_ids (`list[str]`): IFEval instruction ids, e.g. `"punctuation:no_comma"`.
        kwargs (`list[dict | None]`): one dict of checker arguments per instruction (IFEval's `kwargs`; `None`
            values are dropped, as in the `google/IFEval` rows).
        prompt (`str`): the prompt, for checkers that read it.

    An empty response follows no instruction (as upstream's evaluation scores it).

    ```python
    >>> check_instructions("no commas here", ["punctuation:no_comma", "keywords:key_sentences"], [{}, {}])
    [(True, True), None]

    ```
    """
    checkable = [i for i, name in enumerate(instruction_ids) if unsupported_reason(name) is None]
    results, _ = evaluate_instructions(
        response,
        [instruction_ids[i] for i in checkable],
        [kwargs[i] or {} for i in checkable],
        prompt,
        INSTRUCTION_DICT,
    )
    passed = [(r.strict_pass, r.loose_pass) for r in results] or [(False, False)] * len(checkable)
    verdicts: list[tuple[bool, bool] | None] = [None] * len(instruction_ids)
    for i, verdict in zip(checkable, passed):
        verdicts[i] = verdict
    return verdicts


def score_instructions(responses: list[str], examples: list[dict]) -> dict:
    """IFEval's four accuracies over `responses` to `examples` (rows with `prompt`, `instruction_id_list`, `kwargs`).

    Returns `{"prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc"`
    (fractions in [0, 1], `None` when nothing could be checked; lm-eval's names), `"prompts_scored"`,
    `"instructions_unsupported"}`. Prompt level: every checkable instruction of a prompt followed; instruction level:
    each checkable instruction. A prompt with no checkable instruction is left out of both.
    """
    prompts: dict[str, list[bool]] = {"strict": [], "loose": []}
    instructions: dict[str, list[bool]] = {"strict": [], "loose": []}
    unsupported: Counter[str] = Counter()
    for response, example in zip(responses, examples):
        ids = example["instruction_id_list"]
        verdicts = check_instructions(response, ids, example.get("kwargs") or [{}] * len(ids), example["prompt"])
        unsupported.update(name for name, verdict in zip(ids, verdicts) if verdict is None)
        checked = [verdict for verdict in verdicts if verdict is not None]
        if not checked:
            continue
        for mode, column in (("strict", 0), ("loose", 1)):
            prompts[mode].append(all(v[column] for v in checked))
            instructions[mode].extend(v[column] for v in checked)
    if unsupported:
        reasons = "; ".join(f"{n} × {name} ({unsupported_reason(name)})" for name, n in sorted(unsupported.items()))
        logger.warning("IFEval: left out instructions that cannot be checked here: %s", reasons)

    def accuracy(hits: list[bool]) -> float | None:
        return sum(hits) / len(hits) if hits else None

    return {
        "prompt_level_strict_acc": accuracy(prompts["strict"]),
        "inst_level_strict_acc": accuracy(instructions["strict"]),
        "prompt_level_loose_acc": accuracy(prompts["loose"]),
        "inst_level_loose_acc": accuracy(instructions["loose"]),
        "prompts_scored": len(prompts["strict"]),
        "instructions_unsupported": sum(unsupported.values()),
    }
