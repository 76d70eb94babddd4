"""Grading and metrics: Kendall's tau, seeded bootstrap intervals, chain accuracy, breakdowns."""
import dataclasses
import itertools

import numpy as np
import pytest
from scipy import stats

from sf2t_jax.eval import bootstrap, metrics
from sf2t_jax.finevidbench.schema import Item


def _item(task, turn=1, conv="c0", answer="A", options=("x", "y", "z", "w"), speed="x1", category="distinctive",
          order=None):
    level = "scene" if task in ("action", "effect", "speed") else "fragment"
    frames = None if level == "scene" else tuple(range(len(order) if order else 4))
    return Item(item_id=f"{conv}/t{turn}/{task}/{speed}", video_id="v", split="test", level=level, task=task,
                speed=speed, conversation=conv, turn=turn, question="q", options=options,
                answer=answer if options else ", ".join(map(str, order)),
                answer_text=options["ABCD".index(answer)] if options else ", ".join(map(str, order)),
                category=category, template="t", frames=frames, frames_per_clip=16 if frames else None,
                permutation=tuple(range(len(frames))) if frames else None, order=order)


def test_kendall_tau_matches_scipy():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 8):
        gold = list(rng.permutation(n) + 1)
        for _ in range(5):
            pred = list(rng.permutation(n) + 1)
            rank_pred = [pred.index(v) for v in gold]
            assert metrics.kendall_tau(pred, gold) == pytest.approx(stats.kendalltau(range(n), rank_pred).statistic)
    assert metrics.kendall_tau([3, 1, 2], [3, 1, 2]) == 1.0
    assert metrics.kendall_tau([2, 1, 3], [3, 1, 2]) == -1.0  # exactly reversed
    assert metrics.kendall_tau([1, 3, 2], [3, 1, 2]) == pytest.approx(1 / 3)
    assert metrics.kendall_tau([4, 3, 2, 1], [1, 2, 3, 4]) == -1.0
    with pytest.raises(ValueError, match="same items"):
        metrics.kendall_tau([1, 2], [1, 3])


def test_bootstrap_is_seeded_and_matches_explicit_resampling():
    values = (np.arange(200) % 3 == 0).astype(float)  # mean 0.335
    a = bootstrap.interval(values, resamples=2000, ci=0.95, rng=np.random.default_rng(1))
    b = bootstrap.interval(values, resamples=2000, ci=0.95, rng=np.random.default_rng(1))
    assert a == b
    # The binomial shortcut for 0/1 values has the distribution of explicit resampling.
    rng = np.random.default_rng(2)
    explicit = values[rng.integers(0, 200, (4000, 200))].mean(1)
    lo, hi = np.quantile(explicit, [0.025, 0.975])
    assert a[0] == pytest.approx(lo, abs=0.015) and a[1] == pytest.approx(hi, abs=0.015)
    # So does resampling clusters of one value each.
    single = bootstrap.interval(values, [str(i) for i in range(200)], resamples=4000, ci=0.95,
                                rng=np.random.default_rng(4))
    assert single[0] == pytest.approx(lo, abs=0.015) and single[1] == pytest.approx(hi, abs=0.015)
    # Continuous values (Kendall's tau) take the explicit path.
    taus = np.linspace(-1, 1, 50)
    lo, hi = bootstrap.interval(taus, resamples=500, ci=0.9, rng=np.random.default_rng(3))
    assert lo < 0 < hi
    assert bootstrap.interval(np.array([]), resamples=10, ci=0.95, rng=rng) == [None, None]


def test_video_bootstrap_widens_intervals_as_far_as_items_are_correlated():
    """20 videos x 50 items, every item of a video answered alike: there are 20 independent
    outcomes, not 1,000, so the interval is sqrt(50) ~ 7x the item bootstrap's (half-width of a
    proportion ~ 1.96 sqrt(p(1-p)/n)). Resampled means pool a drawn video's items."""
    per_video = (np.arange(20) % 2).astype(float)  # half the videos right
    values = np.repeat(per_video, 50)
    videos = np.repeat([f"v{i}" for i in range(20)], 50)
    items = bootstrap.interval(values, resamples=4000, ci=0.95, rng=np.random.default_rng(0))
    clustered = bootstrap.interval(values, videos, resamples=4000, ci=0.95, rng=np.random.default_rng(0))
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert 5 < width(clustered) / width(items) < 9, (items, clustered)
    assert clustered[0] == pytest.approx(0.5 - 1.96 * np.sqrt(0.25 / 20), abs=0.05)
    # Unequal video sizes: the statistic is the pooled mean, not the mean of video means.
    means = bootstrap.resampled_means(np.array([1.0, 0.0, 0.0, 0.0]), ["a", "b", "b", "b"], resamples=2000,
                                      rng=np.random.default_rng(5))
    assert set(np.round(means, 6)) <= {0.0, 0.25, 1.0}
    with pytest.raises(ValueError, match="3 cluster labels for 4 values"):
        bootstrap.interval(np.ones(4), ["a", "b", "c"], resamples=10, ci=0.95, rng=np.random.default_rng(0))


def test_paired_difference_resamples_both_runs_by_video():
    rng = np.random.default_rng(0)
    videos = np.repeat([f"v{i}" for i in range(30)], 20)
    a = rng.random(600) < 0.6
    b = a.copy()
    b[:100] = ~b[:100]  # the runs differ on the first five videos only
    d = bootstrap.paired_difference(a, b, videos, resamples=2000, ci=0.95, rng=np.random.default_rng(1))
    assert d["n"] == 600 and d["clusters"] == 30
    assert d["value"] == pytest.approx((a.astype(float) - b).mean())
    assert d["ci"][0] <= d["value"] <= d["ci"][1]
    same = bootstrap.paired_difference(a, a, videos, resamples=100, ci=0.95, rng=np.random.default_rng(1))
    assert same["value"] == 0 and same["ci"] == [0.0, 0.0]


def test_grading_breakdowns_and_chain():
    conv_a = [_item("frame_count", 1, "a"), _item("adjust_or_not", 2, "a", "B", ("no", "yes")),
              _item("rearrangement", 3, "a", options=(), order=(2, 3, 1))]
    conv_b = [_item("frame_count", 1, "b"), _item("adjust_or_not", 2, "b", "A", ("no", "yes"))]
    scene = [_item("speed", conv=f"s{s}", speed=s, answer="B") for s in ("x0.5", "x1", "x2")]
    items = conv_a + conv_b + scene
    answers = {"a/t1": "A", "a/t2": "yes", "a/t3": "2, 3, 1", "b/t1": "A", "b/t2": "The answer is B",
               "sx0.5/t1": "B", "sx1/t1": "B", "sx2/t1": "C"}
    records = [metrics.grade_generation(it, answers["/".join(it.item_id.split("/")[:2])]) for it in items]
    records.append(metrics.grade_loglik(conv_b[0], [0.1, 2.0, 3.0, 4.0]))
    m = metrics.compute_metrics(records, items, bootstrap=200, seed=0)
    assert list(m) == ["loglik", "generate"]  # METHODS order, whatever the record order
    g = m["generate"]
    assert g["tasks"]["frame_count"]["value"] == 1.0
    assert g["tasks"]["adjust_or_not"]["value"] == 0.5
    assert g["chain"] == {"value": 0.5, "ci": g["chain"]["ci"], "n": 2, "videos": 1}  # conversation a right, b wrong
    assert g["kendall_tau"]["value"] == 1.0
    assert g["speed"]["speed"]["x2"]["value"] == 0.0 and g["speed"]["speed"]["x1"]["value"] == 1.0
    assert g["steps"]["1"]["n"] == 2 and g["steps"]["3"]["n"] == 1
    assert g["chance"]["adjust_or_not"] == 0.5 and g["chance"]["rearrangement"] == 0.0
    assert g["unparsable"]["overall"]["value"] == 0.0
    assert m["loglik"]["overall"]["value"] == 1.0
    flat = metrics.summary(m)
    assert flat["eval/generate/chain"] == 0.5 and flat["eval/loglik/frame_count"] == 1.0


def test_unparsable_is_wrong_and_worst_tau():
    item = _item("rearrangement", options=(), order=(2, 3, 1))
    r = metrics.grade_generation(item, "I am not sure")
    assert (r["correct"], r["parsed"], r["tau"]) == (False, False, metrics.UNPARSABLE_TAU)
    r = metrics.grade_generation(item, "1, 2, 3")
    assert (r["correct"], r["parsed"]) == (False, True) and r["tau"] == pytest.approx(-1 / 3)
    mc = metrics.grade_generation(_item("action"), "A person walks in")
    assert (mc["correct"], mc["parsed"], mc["pred"]) == (False, False, None)


def test_every_permutation_grades_consistently():
    gold = (2, 4, 1, 3)
    item = _item("rearrangement", options=(), order=gold)
    for perm in itertools.permutations(range(1, 5)):
        r = metrics.grade_generation(item, " ".join(map(str, perm)))
        assert r["correct"] == (perm == gold) and r["parsed"]


def test_speed_balanced_accuracy_is_the_mean_recall_per_gold_answer():
    """Gold answers slow, normal, fast (x2 and x4), static: a model answering "fast" always is
    right on 2 of 5 items (40%) but on 1 of 4 gold answers (balanced 25%)."""
    speeds = ("x0.5", "x1", "x2", "x4", "static")
    items = [dataclasses.replace(_item("speed", conv=f"{v}{s}", speed=s), video_id=f"v{v}")
             for v in range(6) for s in speeds]
    records = [metrics.grade_generation(it, "A" if it.speed in ("x2", "x4") else "B") for it in items]
    m = metrics.compute_metrics(records, items, bootstrap=200, seed=0)["generate"]
    assert m["tasks"]["speed"]["value"] == 0.4
    balanced = m["speed_balanced"]
    assert balanced["value"] == 0.25
    assert balanced["classes"] == {"fast": 1.0, "normal": 0.0, "slow": 0.0, "static": 0.0}
    assert balanced["ci"] == [0.25, 0.25]  # every video holds every class: no resample moves it
    assert (balanced["n"], balanced["videos"]) == (30, 6)
    assert metrics.summary({"generate": m})["eval/generate/speed_balanced"] == 0.25
    # a class missing from a resample is left out of its mean, not counted as 0 or NaN
    uneven = bootstrap.balanced_mean([1.0, 0.0, 1.0], ["fast", "slow", "fast"], ["a", "b", "c"],
                                     resamples=200, ci=0.95, rng=np.random.default_rng(0))
    assert uneven["value"] == 0.5 and 0.0 <= uneven["ci"][0] <= uneven["ci"][1] <= 1.0
