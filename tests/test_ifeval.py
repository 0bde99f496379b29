"""IFEval scored by the upstream checkers (`raft_trainer.eval.instructions` over `if-verifiable`): every instruction
type of the registry has a case that follows it and one that does not, and our verdict is the upstream checker's;
strict vs loose, prompt vs instruction level, unsupported ids, and the bundled prompt set."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nltk
import pytest
from if_verifiable.ifeval import instructions_util
from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT
from nltk.tokenize.punkt import PunktSentenceTokenizer

from raft_trainer.eval import instructions
from raft_trainer.eval.instructions import check_instructions, score_instructions, unsupported_reason

ROOT = Path(__file__).resolve().parents[1]

# instruction id -> (kwargs, a response that follows it, one that does not); written for this suite
CASES = {
    "keywords:existence": ({"keywords": ["harbour", "lantern"]}, "A lantern by the Harbour.", "A lantern by the sea."),
    "keywords:frequency": (
        {"keyword": "river", "frequency": 3, "relation": "at least"},
        "River, river and one more river.",
        "A river and a river.",
    ),
    "keywords:forbidden_words": ({"forbidden_words": ["rain"]}, "It was a grey day; it rained.", "It will rain."),
    "keywords:letter_frequency": (
        {"letter": "z", "let_frequency": 2, "let_relation": "less than"},
        "A quiet day.",
        "Zebras graze lazily.",
    ),
    "language:response_language": (
        {"language": "de"},
        "Heute ist das Wetter schön und wir gehen im Park spazieren.",
        "Today the weather is nice and we are walking in the park.",
    ),
    "length_constraints:number_sentences": (
        {"num_sentences": 3, "relation": "less than"},
        "The cat slept. The dog barked.",
        "The cat slept. The dog barked. The bird sang.",
    ),
    "length_constraints:number_paragraphs": (
        {"num_paragraphs": 2},
        "First part.\n***\nSecond part.",
        "First part.\n***\nSecond part.\n***\nThird part.",
    ),
    "length_constraints:number_words": (
        {"num_words": 5, "relation": "at least"},
        "one two three four five",
        "one two three four",
    ),
    "length_constraints:nth_paragraph_first_word": (
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
        "We met at noon.\n\nThen we walked home.",
        "We met at noon.\n\nLater we walked home.",
    ),
    "detectable_content:number_placeholders": (
        {"num_placeholders": 2},
        "Dear [name], see you at [place].",
        "Dear [name], see you soon.",
    ),
    "detectable_content:postscript": (
        {"postscript_marker": "P.P.S"},
        "See you soon.\nP.P.S bring the map",
        "See you soon. Bring the map.",
    ),
    "detectable_format:number_bullet_lists": ({"num_bullets": 2}, "* apples\n* pears", "* apples\n* pears\n* plums"),
    "detectable_format:constrained_response": ({}, "My answer is maybe.", "I am not sure."),
    "detectable_format:number_highlighted_sections": (
        {"num_highlights": 2},
        "The *first point* and the *second point*.",
        "Only the *first point*.",
    ),
    "detectable_format:multiple_sections": (
        {"section_spliter": "Part", "num_sections": 2},
        "Part 1\nThe start.\nPart 2\nThe end.",
        "Part 1\nThe whole story.",
    ),
    "detectable_format:json_format": ({}, '```json\n{"city": "Oslo"}\n```', "city: Oslo"),
    "detectable_format:title": ({}, "<<Winter Walks>>\nA short piece.", "Winter Walks\nA short piece."),
    "combination:two_responses": ({}, "A red door.\n******\nA blue gate.", "A red door."),
    "combination:repeat_prompt": (
        {"prompt_to_repeat": "Name a fruit."},
        "Name a fruit. A pear.",
        "A pear. Name a fruit.",
    ),
    "startend:end_checker": (
        {"end_phrase": "Any other questions?"},
        "Done. Any other questions?",
        "Any other questions? Done.",
    ),
    "change_case:capital_word_frequency": (
        {"capital_frequency": 2, "capital_relation": "at least"},
        "This is VERY IMPORTANT news.",
        "This is Very important news.",
    ),
    "change_case:english_capital": (
        {},
        "PLEASE REMEMBER TO BRING YOUR UMBRELLA BECAUSE IT WILL RAIN THIS AFTERNOON.",
        "Please remember to bring your umbrella because it will rain this afternoon.",
    ),
    "change_case:english_lowercase": (
        {},
        "the meeting starts at noon in the garden.",
        "The meeting starts at noon in the garden.",
    ),
    "punctuation:no_comma": ({}, "No commas at all here.", "Well, here is one."),
    "startend:quotation": ({}, '"All of it in quotes."', 'Only "part" in quotes.'),
}


@pytest.fixture
def punkt(monkeypatch):
    """NLTK's Punkt sentence splitter without its downloadable data (an untrained `PunktSentenceTokenizer`, which
    splits at '. ' like the trained English one on these cases): the two NLTK checkers run offline."""
    monkeypatch.setattr(instructions_util, "_get_sentence_tokenizer", PunktSentenceTokenizer)
    monkeypatch.setattr(nltk.tokenize, "_get_punkt_tokenizer", lambda language="english": PunktSentenceTokenizer())
    unsupported_reason.cache_clear()
    yield
    unsupported_reason.cache_clear()


def upstream(instruction_id: str, kwargs: dict, response: str) -> bool:
    checker = INSTRUCTION_DICT[instruction_id](instruction_id)
    checker.build_description(**kwargs)
    return checker.check_following(response)


def test_every_upstream_instruction_type_has_a_case():
    assert set(CASES) == set(INSTRUCTION_DICT) and len(CASES) == 25


@pytest.mark.parametrize("instruction_id", sorted(CASES))
def test_each_instruction_is_the_upstream_checkers_verdict(instruction_id, punkt):
    kwargs, good, bad = CASES[instruction_id]
    assert upstream(instruction_id, kwargs, good) is True and upstream(instruction_id, kwargs, bad) is False
    verdicts = [check_instructions(text, [instruction_id], [kwargs], prompt="Write.")[0] for text in (good, bad)]
    assert [strict for strict, _ in verdicts] == [True, False]


def test_strict_and_loose_follow_ifeval():
    # loose forgives a first line of chatter and markdown asterisks; strict does not
    assert check_instructions("Sure!\n<<Title>>", ["detectable_format:title"], [{}]) == [(True, True)]
    chatty = 'Here you go:\n"All quoted."'
    assert check_instructions(chatty, ["startend:quotation"], [{}]) == [(False, True)]
    assert check_instructions("**no comma**", ["punctuation:no_comma"], [{}]) == [(True, True)]
    assert check_instructions("", ["punctuation:no_comma"], [{}]) == [(False, False)]  # empty follows nothing


def test_scores_are_prompt_and_instruction_level_with_unsupported_left_out():
    examples = [
        {
            "prompt": "a",
            "instruction_id_list": ["punctuation:no_comma", "detectable_format:title"],
            "kwargs": [{}, {}],
        },
        {"prompt": "b", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [None]},
        {"prompt": "c", "instruction_id_list": ["keywords:key_sentences"], "kwargs": [{}]},
        {"prompt": "d", "instruction_id_list": ["startend:quotation"], "kwargs": [{}]},
    ]
    responses = ["no comma, sorry <<T>>", "fine", "anything", 'Intro:\n"quoted"']
    assert score_instructions(responses, examples) == {
        "prompt_level_strict_acc": 1 / 3,
        "inst_level_strict_acc": 2 / 4,
        "prompt_level_loose_acc": 2 / 3,
        "inst_level_loose_acc": 3 / 4,
        "prompts_scored": 3,
        "instructions_unsupported": 1,
    }


def test_nltk_checkers_without_their_data_are_left_out_with_the_fix(monkeypatch, caplog):
    def missing(*args, **kwargs):
        raise LookupError("Resource punkt_tab not found.")

    monkeypatch.setattr(instructions_util, "_get_sentence_tokenizer", missing)
    monkeypatch.setattr(nltk.tokenize, "_get_punkt_tokenizer", missing)
    unsupported_reason.cache_clear()
    try:
        ids = ["length_constraints:number_sentences", "change_case:capital_word_frequency", "punctuation:no_comma"]
        row = {"prompt": "p", "instruction_id_list": ids, "kwargs": [CASES[i][0] for i in ids]}
        scores = score_instructions(["No comma. Two sentences."], [row])
        assert scores["instructions_unsupported"] == 2 and scores["inst_level_strict_acc"] == 1.0
        assert "python -m nltk.downloader punkt punkt_tab" in caplog.text
    finally:
        unsupported_reason.cache_clear()


def test_language_detection_is_seeded():
    assert instructions.langdetect.DetectorFactory.seed == 0


def test_bundled_prompts_are_the_generator_output_and_cover_every_type():
    spec = importlib.util.spec_from_file_location("build_ifeval_prompts", ROOT / "dev" / "build_ifeval_prompts.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    shipped = (ROOT / "raft_trainer" / "eval" / "data" / "ifeval_prompts.jsonl").read_text(encoding="utf-8")
    assert shipped == builder.render(builder.build())  # regenerate with: python dev/build_ifeval_prompts.py
    rows = [json.loads(line) for line in shipped.splitlines()]
    assert [r["instruction_id_list"][0] for r in rows[:25]] == list(INSTRUCTION_DICT)
    assert all(len(r["instruction_id_list"]) == 2 for r in rows[25:]) and len(rows) == 50
    for r in rows:  # every row's arguments build its checker, and the prompt carries each instruction's text
        for name, kwargs in zip(r["instruction_id_list"], r["kwargs"]):
            checker = INSTRUCTION_DICT[name](name)
            assert checker.build_description(**kwargs).split(" ")[0] in r["prompt"]


def test_kwargs_are_checked_against_the_upstream_checkers_before_generation(punkt):
    """`kwargs_problem` (run on every row when `raft eval` reads the file): the arguments of every case above pass;
    a wrong type, an unknown key and a value the checker fails on are named; the global `random` is left alone."""
    import random

    from raft_trainer.eval.instructions import checker_arguments, kwargs_problem

    state = random.getstate()
    assert all(kwargs_problem(name, kwargs) is None for name, (kwargs, _, _) in CASES.items())
    assert kwargs_problem("length_constraints:number_words", {"num_words": None, "relation": None}) is None  # dropped
    assert checker_arguments("keywords:frequency") == {"keyword": str, "frequency": int, "relation": str}
    assert kwargs_problem("keywords:frequency", {"keyword": "a", "frequency": "3"}) == (
        "'frequency' must be an integer, got the str '3'"
    )
    assert kwargs_problem("keywords:existence", {"keywords": "harbour"}) == (
        "'keywords' must be a list of strings, got the str 'harbour'"
    )
    assert kwargs_problem("length_constraints:nth_paragraph_first_word", {"nth_paragraph": 1.0}) == (
        "'nth_paragraph' must be an integer, got the float 1.0"
    )
    # upstream picks no `prompt_to_repeat` itself: a wrong one is found by running the checker on a sample response
    assert kwargs_problem("combination:repeat_prompt", {"prompt_to_repeat": 5}) == (
        "the checker fails on {'prompt_to_repeat': 5}: AttributeError: 'int' object has no attribute 'strip'"
    )
    assert kwargs_problem("ifbench:not_an_ifeval_id", {"anything": "x"}) is None  # left out of the scores anyway
    assert random.getstate() == state
