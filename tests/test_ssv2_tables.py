"""Template tables: the 174 SSv2 templates by rule, the world's 24 by hand, and their fit."""
import json
import string

import pytest

from sf2t_jax import ssv2
from sf2t_jax.ssv2 import curated as C
from sf2t_jax.ssv2 import rules, tables
from sf2t_jax.world.templates import world_templates


def _fields(effect: str) -> list[int]:
    return [int(f) for _, f, _, _ in string.Formatter().parse(effect) if f is not None]


def test_ssv2_vocabulary():
    templates = ssv2.ssv2_templates()
    assert len(templates) == 174 == len(set(templates))
    assert templates[19] == "Holding [something] next to [something]"
    assert ssv2.class_name(templates[0]) == "Approaching something with your camera"
    assert ssv2.class_name("[Something] falling like a rock") == "Something falling like a rock"


def test_fill_and_label():
    assert ssv2.fill("[Something] falling like a rock", ["red star"]) == (
        "Red star falling like a rock")
    assert ssv2.label(C.ONTO, ["red star", "blue square"]) == (
        "putting red star onto blue square")
    with pytest.raises(ValueError, match="2 slots"):
        ssv2.fill(C.ONTO, ["red star"])


def test_every_ssv2_template_gets_all_tables():
    t = tables.template_tables(ssv2.ssv2_templates())
    vocab = set(ssv2.ssv2_templates())
    for template in ssv2.ssv2_templates():
        assert t.category[template] in rules.CATEGORIES
        fields = _fields(t.effect[template])
        assert fields and max(fields) < ssv2.num_slots(template), template
        syn = t.synonyms[template]
        assert template not in syn and len(set(syn)) == len(syn) and set(syn) <= vocab
        rev = t.reverse[template]
        assert rev is None or (rev in vocab and rev != template)
    counts = {c: sum(v == c for v in t.category.values()) for c in rules.CATEGORIES}
    assert min(counts.values()) >= 30, counts  # every category is well populated
    # most templates have at least one visual synonym to draw distractors from
    assert sum(bool(s) for s in t.synonyms.values()) >= 140


def test_rules_know_opposites():
    v = ssv2.ssv2_templates()
    assert rules.reverse("Moving [something] up", v) == "Moving [something] down"
    assert rules.reverse("Opening [something]", v) == "Closing [something]"
    assert rules.reverse("Pushing [something] from left to right", v) == (
        "Pulling [something] from right to left")
    assert rules.reverse("Putting [something] into [something]", v) == (
        "Taking [something] out of [something]")
    assert "Pushing [something] from right to left" in rules.synonyms(
        "Pushing [something] from left to right", v)
    assert rules.category("Holding [something]") == "slight"
    assert rules.category("Pretending to open [something] without actually opening it") == (
        "slight")
    assert rules.category("Pushing [something] from left to right") == "distinctive"
    assert rules.category("Putting [something] into [something]") == "non_typical"
    assert rules.effect("Putting [something] onto [something]") == "{0} is on {1}"
    assert rules.effect("Hitting [something] with [something]") == "{0} has been hit with {1}"


def test_reversal_goes_back_and_forth():
    """Reversing twice returns to a template with the same reversal (two templates may share
    one: both putting and pushing something onto something reverse to pushing it off)."""
    t = tables.template_tables(ssv2.ssv2_templates())
    assert sum(r is not None for r in t.reverse.values()) >= 30
    for template, rev in t.reverse.items():
        if rev is not None:
            back = t.reverse[rev]
            assert back is not None and t.reverse[back] == rev, (template, rev, back)


def test_curated_templates_are_real_ssv2_templates_and_rules_agree():
    curated = tuple(C.CURATED)
    assert 20 <= len(curated) <= 26 and set(curated) <= set(ssv2.ssv2_templates())
    assert {C.CURATED[t].category for t in curated} == set(rules.CATEGORIES)
    for template in curated:
        entry = C.CURATED[template]
        assert rules.category(template) == entry.category, template
        assert rules.reverse(template, curated) == entry.reverse, template
        assert all(s in curated for s in entry.synonyms) and template not in entry.synonyms


def test_the_world_renders_exactly_the_curated_templates():
    assert world_templates() == tuple(C.CURATED)


def test_world_synonyms_cover_the_spec_pairs():
    t = tables.template_tables(world_templates())
    assert C.PUSH_RL in t.synonyms[C.PUSH_LR]  # opposite direction
    assert C.PULL_LR in t.synonyms[C.PUSH_LR]  # push vs pull
    assert C.OFF in t.synonyms[C.ONTO] and C.ONTO in t.synonyms[C.OFF]  # put on vs take off
    assert C.AWAY in t.synonyms[C.APPROACH]  # bigger vs smaller
    assert C.UNCOVER in t.synonyms[C.COVER]
    for template in t.templates:
        assert len(t.synonyms[template]) >= 1
        assert set(t.synonyms[template]) <= set(t.templates)


def test_tables_are_restricted_to_the_vocabulary():
    vocab = [C.PUSH_LR, C.PULL_LR, C.HOLD]
    t = tables.template_tables(vocab)
    assert t.templates == tuple(vocab)
    assert t.synonyms[C.PUSH_LR] == (C.PULL_LR,) and t.reverse[C.PUSH_LR] is None


def test_unknown_template_is_a_clear_error():
    with pytest.raises(tables.UnknownTemplateError, match="Juggling"):
        tables.template_tables([C.HOLD, "Juggling [something]"])
    with pytest.raises(tables.UnknownTemplateError, match="not in this vocabulary"):
        tables.template_tables([C.HOLD]).check(C.PUSH_LR)


def test_shipped_tables_file_is_current():
    shipped = tables.ssv2_tables().to_json()
    assert shipped == json.loads(json.dumps(
        tables.template_tables(ssv2.ssv2_templates()).to_json())), (
        "data/ssv2_tables.json is stale: run python -m sf2t_jax.ssv2.tables")


def test_fill_effect():
    assert tables.fill_effect("{0} is on {1}", ["red star", "blue square"]) == (
        "red star is on blue square")
    assert tables.fill_effect("{1} has not moved", ["the top"]) == "something has not moved"
