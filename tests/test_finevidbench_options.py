"""Multiple-choice plumbing: letters, distractors, placeholder transfer, frame sets."""
import collections

import numpy as np
import pytest

from sf2t_jax.finevidbench.fragment import sample_frame_set
from sf2t_jax.finevidbench.options import (LetterBalancer, adapt_placeholders, arrange,
                                           pick_distractors)


def test_letters_are_balanced_within_each_block():
    rng = np.random.default_rng(0)
    balancer = LetterBalancer(rng)
    letters = [arrange("yes", ["a", "b", "c"], rng, balancer)[1] for _ in range(400)]
    assert collections.Counter(letters) == {"A": 100, "B": 100, "C": 100, "D": 100}
    options, letter = arrange("yes", ["no"], rng, balancer)
    assert options["AB".index(letter)] == "yes" and set(options) == {"yes", "no"}


def test_placeholders_follow_slot_names():
    touch = "Touching (without moving) [part] of [something]"
    assert adapt_placeholders(touch, ["the top", "red star"], "Holding [something]") == [
        "red star"]
    assert adapt_placeholders("Uncovering [something]", ["red star"],
                              "Covering [something] with [something]") == [
        "red star", "something"]
    assert adapt_placeholders("Holding [something]", ["red star"], touch) == [
        "part", "red star"]
    assert adapt_placeholders("Putting [something] onto [something]", ["a", "b"],
                              "Moving [something] and [something] closer to each other") == [
        "a", "b"]


def test_distractors_skip_duplicate_texts_and_fail_clearly():
    texts = {"a": "right", "b": "right", "c": "left", "d": "up", "e": "down"}
    assert pick_distractors("down", "abcde", texts.get) == ["right", "left", "up"]
    with pytest.raises(ValueError, match="only 2 distinct"):
        pick_distractors("down", "abce", texts.get, what="test item")


def test_frame_sets():
    rng = np.random.default_rng(0)
    for shuffled in (False, True):
        for _ in range(20):
            fs = sample_frame_set(rng, 16, (4, 8), shuffled)
            assert 4 <= len(fs.shown) <= 8 and len(set(fs.shown)) == len(fs.shown)
            assert fs.shuffled == shuffled
            assert [fs.shown[p - 1] for p in fs.order] == sorted(fs.shown)
