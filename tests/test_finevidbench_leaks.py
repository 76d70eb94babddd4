"""FineVidBench has no answer leaks: text-only baselines score chance on every task.

The benchmark is built from the synthetic world's labels (nothing rendered: building reads
records only) at 600 test videos, about 14,400 items: 2,400 Speed, 1,800 adjust-or-not, about
900 frame-comparison and rearrangement items. A chance-level baseline's accuracy then has a
standard error of at most 1.5 points (frame comparison, p = 0.25, n ~ 900), so a baseline 5
points above chance is a leak, not noise. The baselines only read the item text and the gold
answers of earlier turns (what a model sees under gold history), never a video; those that
are fitted (majority answers) are fitted on the benchmark itself, which only favours them.
"""
import collections
import math
import re
from pathlib import Path

import pytest

from sf2t_jax.finevidbench import build as fvb
from sf2t_jax.finevidbench.schema import LETTERS, SPEED_ANSWERS
from sf2t_jax.finevidbench.source import Problems, Record, Source
from sf2t_jax.world import build as world
from sf2t_jax.world.config import WorldConfig

VIDEOS = 600
TOLERANCE = 0.05


@pytest.fixture(scope="module")
def items():
    config = WorldConfig(train_clips=0, validation_clips=0, test_clips=VIDEOS, seed=3)
    records = []
    for i in range(VIDEOS):
        cid = world.clip_id("test", i)
        label = world.label_record(cid, world.scene_for(config, "test", i))
        records.append(Record(cid, label["label"], label["template"],
                              tuple(label["placeholders"]), "test", Path(f"{cid}.webm")))
    return fvb.build_items(Source(Path("."), {"test": records}, Problems()), "test")


def _chance(item) -> float:
    if item.options:
        return 1.0 / len(item.options)
    return 1.0 / (math.factorial(len(item.order)) - 1)  # any non-identity order


def _majority(keys_and_golds) -> float:
    """Accuracy of answering each key's most common gold answer (fitted on these items)."""
    by_key = collections.defaultdict(collections.Counter)
    for key, gold in keys_and_golds:
        by_key[key][gold] += 1
    total = sum(sum(c.values()) for c in by_key.values())
    return sum(c.most_common(1)[0][1] for c in by_key.values()) / total


def _numbers(texts) -> list[int]:
    return [int(re.search(r"\d+", t).group()) for t in texts]


def _baselines(task_items, history) -> dict[str, float]:
    """Accuracy of each text-only rule that applies to the task's items."""
    first = task_items[0]
    out = {
        "majority letter": _majority((None, it.answer) for it in task_items),
        "majority answer": _majority((None, it.answer_text) for it in task_items),
    }
    if len({it.question for it in task_items}) <= 12:  # paraphrases, not per-item questions
        out["majority answer per question"] = _majority((it.question, it.answer_text)
                                                        for it in task_items)
    # answer-from-history: the most common answer given an earlier turn's gold answer
    for turn in range(1, first.turn if first.level == "fragment" else 1):
        earlier = [history[it.conversation][turn] for it in task_items]
        if len({e.answer_text for e in earlier}) <= 12:  # few values: a lookup table, no overfit
            out[f"answer given turn {turn}'s gold"] = _majority(
                ((e.answer_text, e.task), it.answer_text) for e, it in zip(earlier, task_items))
        out[f"letter given turn {turn}'s gold letter"] = _majority(
            (e.answer, it.answer) for e, it in zip(earlier, task_items))
    if all(it.options and re.search(r"\d", "".join(it.options)) for it in task_items):
        def rule(pick):
            hits = 0
            for it in task_items:
                nums = _numbers(it.options)
                hits += LETTERS[nums.index(pick(it, nums))] == it.answer
            return hits / len(task_items)
        out["lowest number"] = rule(lambda it, nums: min(nums))
        out["highest number"] = rule(lambda it, nums: max(nums))
        out["lowest if earliest, highest if latest"] = rule(
            lambda it, nums: min(nums) if "earliest" in it.question else max(nums))
        # counts a set can have (BenchConfig.set_size): an option outside them is never right
        lo, hi = fvb.BenchConfig().set_size
        out["lowest possible count"] = rule(lambda it, nums: min([k for k in nums if lo <= k <= hi] or nums))
        out["highest possible count"] = rule(lambda it, nums: max([k for k in nums if lo <= k <= hi] or nums))
    if not first.options:  # rearrangement: the shown order, reversed
        out["reversed"] = sum(list(it.order) == list(range(len(it.order), 0, -1))
                              for it in task_items) / len(task_items)
    return out


def test_text_only_baselines_score_chance_on_every_task(items):
    history = collections.defaultdict(dict)
    by_task = collections.defaultdict(list)
    for it in items:
        history[it.conversation][it.turn] = it
        by_task[it.task].append(it)
    assert set(by_task) == {"action", "effect", "speed", "frame_count", "meaning_of_order",
                            "frame_comparison", "adjust_or_not", "rearrangement"}
    assert len(by_task["frame_comparison"]) >= 850 and len(by_task["adjust_or_not"]) == 1800
    leaks = []
    for task, task_items in sorted(by_task.items()):
        # fragment tasks come at a fixed turn, so history rules compare like with like
        assert len({it.turn for it in task_items}) == 1, task
        chance = sum(map(_chance, task_items)) / len(task_items)
        for name, accuracy in _baselines(task_items, history).items():
            if accuracy > chance + TOLERANCE:
                leaks.append(f"{task}: {name} {accuracy:.3f} vs chance {chance:.3f}")
    assert not leaks, "\n".join(leaks)


def test_speed_golds_are_balanced_and_every_speed_is_asked(items):
    speed = [it for it in items if it.task == "speed"]
    golds = collections.Counter(it.answer_text for it in speed)
    assert golds == {a: VIDEOS for a in set(SPEED_ANSWERS.values())}
    speeds = collections.Counter(it.speed for it in speed)
    assert speeds == {"x0.5": VIDEOS, "x1": VIDEOS, "x2": VIDEOS // 2, "x4": VIDEOS // 2,
                      "static": VIDEOS}
