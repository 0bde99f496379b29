"""Where a completion ends: the first EOS, or the token that completes a stop string (kept, like EOS)."""

import torch

from raft_trainer.rollouts import Rollouts, end_at_stop_strings
from raft_trainer.stopping import first_stop_length, mask_after_first_stop_string, resolve_stop_strings

from conftest import build_subword_tokenizer, build_tokenizer


def test_first_stop_length_finds_the_token_that_completes_the_string():
    tokenizer = build_subword_tokenizer("byte_level")
    ids = tokenizer("The capital of France is Paris.\nQuestion: next", add_special_tokens=False)["input_ids"]
    length = first_stop_length(tokenizer, ids, ["\n"])
    assert tokenizer.decode(ids[:length]).endswith("\n") and "\n" not in tokenizer.decode(ids[: length - 1])
    two_tokens = first_stop_length(tokenizer, ids, ["\nQuestion:"])
    assert tokenizer.decode(ids[:two_tokens]).endswith("\nQuestion:")
    assert first_stop_length(tokenizer, ids, ["Berlin"]) is None
    assert first_stop_length(tokenizer, ids, []) is None


def test_a_token_that_merges_text_and_the_stop_string_ends_the_completion():
    tokenizer = build_subword_tokenizer("metaspace")  # merges '?\nAnswer' into one token
    ids = tokenizer("absorb?\nAnswer: yes", add_special_tokens=False)["input_ids"]
    length = first_stop_length(tokenizer, ids, ["\n"])
    assert "\n" in tokenizer.convert_ids_to_tokens(ids[length - 1]) and length < len(ids)


def test_mask_and_rollouts_are_cut_after_the_stop_and_marked_finished():
    tokenizer = build_tokenizer()
    word = tokenizer.convert_tokens_to_ids
    ids = torch.tensor([[word("two"), word("plus"), word("two")], [word("is"), word("Paris"), word("four")]])
    mask, stopped = mask_after_first_stop_string(tokenizer, ids, torch.ones_like(ids), ["Paris"])
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]] and stopped.tolist() == [False, True]
    rollouts = end_at_stop_strings(Rollouts(ids, torch.ones_like(ids), torch.tensor([False, False])), tokenizer,
                                   ["Paris"], pad_id=0)  # fmt: skip
    assert rollouts.completion_ids[1].tolist() == [word("is"), word("Paris"), 0]
    assert rollouts.finished.tolist() == [False, True]


def test_default_stop_strings():
    assert resolve_stop_strings(None, build_tokenizer(chat_template=False)) == ["\n"]
    assert resolve_stop_strings(None, build_tokenizer()) == []
    assert resolve_stop_strings([], build_tokenizer(chat_template=False)) == []
