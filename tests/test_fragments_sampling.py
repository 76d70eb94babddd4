"""Determinism and statistics of the fragment stream: seeds, balance, mixing weights."""
import collections

import numpy as np
import pytest

from sf2t_jax import fragments as F

N = 2000  # samples per distribution test


def moving_clip(t=24, h=32, w=32, seed=0):
    """uint8 (t, h, w, 3) greyscale random texture scrolling 3 px per frame."""
    tex = np.random.default_rng(seed).integers(0, 256, (h, 4 * w), dtype=np.uint8)
    frames = np.stack([tex[:, 3 * k: 3 * k + w] for k in range(t)])
    return np.repeat(frames[..., None], 3, axis=-1)


CLIP = moving_clip()


@pytest.mark.parametrize("task", F.TASK_NAMES)
def test_same_seed_and_index_give_identical_bytes(task):
    first = [F.make_sample(CLIP, 7, i, task=task).digest() for i in range(12)]
    again = [F.make_sample(CLIP.copy(), 7, i, task=task).digest() for i in reversed(range(12))]
    assert first == again[::-1]  # regenerated alone, in any order
    assert len(set(first)) == len(first)  # different index, different sample
    assert F.make_sample(CLIP, 8, 0, task=task).digest() != first[0]  # different seed


def test_digest_covers_pixels_text_and_metadata():
    s = F.make_sample(CLIP, 0, 0, task="count")
    frames = s.frames.copy()
    frames[0, 0, 0, 0] ^= 1
    for changed in (F.Sample(s.task, frames, s.question, s.answer, s.present, s.metadata),
                    F.Sample(s.task, s.frames, s.question, "99", s.present, s.metadata),
                    F.Sample(s.task, s.frames, s.question, s.answer, "images",
                                     s.metadata)):
        assert changed.digest() != s.digest()


def test_sample_rng_streams_are_distinct_and_inputs_checked():
    draws = {tuple(F.sample_rng(s, i).integers(1 << 62, size=2))
             for s, i in [(0, 1), (1, 0), (0, 2**32), (2**32, 0), (1, 2**32), (0, 0)]}
    assert len(draws) == 6
    for bad in (-1, 2**64, 1.5, True):
        with pytest.raises(ValueError, match="seed: expected an integer"):
            F.sample_rng(bad, 0)


def yes_fraction(fn, config):
    answers = [fn(CLIP, F.sample_rng(1, i), config).answer for i in range(N)]
    assert set(answers) == {"yes", "no"}
    return answers.count("yes") / N


def test_disorder_yes_no_balanced():
    assert 0.45 <= yes_fraction(F.make_disorder, F.DisorderConfig()) <= 0.55


def test_consistency_same_yes_no_balanced():
    assert 0.45 <= yes_fraction(F.make_consistency, F.ConsistencyConfig(p_where=0.0)) <= 0.55


def test_counts_uniform_over_2_to_16():
    counts = collections.Counter(
        int(F.make_count(CLIP, F.sample_rng(2, i)).answer) for i in range(N))
    assert sorted(counts) == list(range(2, 17))
    observed = np.array([counts[k] for k in range(2, 17)])
    expected = N / 15
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 36.12, (chi2, counts)  # chi-square, 14 degrees of freedom, p = 0.001


def test_where_answers_cover_the_nine_cells():
    config = F.ConsistencyConfig(p_where=1.0)
    counts = collections.Counter(
        F.make_consistency(CLIP, F.sample_rng(3, i), config).answer for i in range(900))
    assert set(counts) == set(F.CELL_NAMES)
    assert all(60 <= c <= 140 for c in counts.values()), counts  # 100 expected each


def test_task_mix_follows_weights_and_zero_is_off():
    config = F.FragmentsConfig(weights={"count": 2.0, "consistency": 1.0, "disorder": 1.0})
    assert dict(config.weights) == {"count": 2.0, "consistency": 1.0, "localize": 0.0,
                                    "disorder": 1.0, "rearrange": 0.0}
    tasks = collections.Counter(F.make_sample(CLIP, 4, i, config).task for i in range(N))
    assert set(tasks) == {"count", "consistency", "disorder"}
    for name, p in (("count", 0.5), ("consistency", 0.25), ("disorder", 0.25)):
        assert abs(tasks[name] / N - p) < 0.04, tasks


def test_default_mix_is_uniform():
    rng = np.random.default_rng(0)
    tasks = collections.Counter(F.draw_task(rng, F.FragmentsConfig()) for _ in range(N))
    assert all(abs(tasks[name] / N - 0.2) < 0.035 for name in F.TASK_NAMES), tasks
