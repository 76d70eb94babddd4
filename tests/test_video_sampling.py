"""Frame index plans: uniform as qwen-vl-utils, random, windows, and speed variants."""
import numpy as np
import pytest

from sf2t_jax.video import sampling
from sf2t_jax.video.sampling import NotEnoughFrames


def test_uniform_matches_qwen_vl_utils_torch_linspace():
    torch = pytest.importorskip("torch")
    mismatches_numpy = 0
    for n in list(range(1, 100)) + [299, 300, 301, 1000, 4097]:
        for k in range(1, 49):
            ours = sampling.uniform_indices(n, k)
            ref = torch.linspace(0, n - 1, k).round().long().numpy()
            np.testing.assert_array_equal(ours, ref, err_msg=f"num_frames={n} num={k}")
            mismatches_numpy += not np.array_equal(ours, np.linspace(0, n - 1, k).round())
    assert mismatches_numpy > 0  # float64 np.linspace is not what qwen-vl-utils computes
    assert sampling.uniform_indices(16, 23)[11] != np.linspace(0, 15, 23).round()[11]


def test_uniform_basic_properties():
    idx = sampling.uniform_indices(100, 8)
    assert idx.dtype == np.int64 and idx[0] == 0 and idx[-1] == 99 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(sampling.uniform_indices(5, 1), [0])
    np.testing.assert_array_equal(sampling.uniform_indices(3, 5), [0, 0, 1, 2, 2])  # more than available: repeats
    with pytest.raises(NotEnoughFrames):
        sampling.uniform_indices(0, 4)


def test_qwen_num_frames():
    assert sampling.qwen_num_frames(300, 30.0) == 20  # 10 s at 2 fps
    assert sampling.qwen_num_frames(30, 30.0) == 4  # clamped up to min_frames
    assert sampling.qwen_num_frames(9, 30.0) == 4
    assert sampling.qwen_num_frames(100, 10.0, nframes=7) == 8  # round(3.5)=4 -> 8
    assert sampling.qwen_num_frames(10_000, 10.0, max_frames=64) == 64
    assert sampling.qwen_num_frames(3, 30.0) == 2  # max_frames clamps to floor2(3)
    with pytest.raises(NotEnoughFrames):
        sampling.qwen_num_frames(1, 30.0)


def test_random_sorted_and_windows():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = sampling.random_sorted_indices(40, 7, rng)
        assert idx.shape == (7,) and np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < 40
    a = sampling.random_sorted_indices(40, 7, np.random.default_rng(3))
    b = sampling.random_sorted_indices(40, 7, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sampling.random_sorted_indices(5, 5, rng), np.arange(5))
    with pytest.raises(NotEnoughFrames):
        sampling.random_sorted_indices(5, 6, rng)
    np.testing.assert_array_equal(sampling.window_indices(10, 4, 6), [6, 7, 8, 9])
    with pytest.raises(NotEnoughFrames):
        sampling.window_indices(10, 4, 7)
    starts = {int(sampling.random_window_indices(10, 4, rng)[0]) for _ in range(200)}
    assert starts == set(range(7))  # every start that fits, and no other


def test_speed_variants_by_construction():
    n, budget = 64, 8
    normal = sampling.speed_indices(n, budget, "x1", start=3)
    np.testing.assert_array_equal(normal, 3 + np.arange(8))
    slow = sampling.speed_indices(n, budget, "x0.5", start=3)
    np.testing.assert_array_equal(slow, [3, 3, 4, 4, 5, 5, 6, 6])  # each frame shown twice
    np.testing.assert_array_equal(sampling.speed_indices(n, budget, "x2", start=3), 3 + 2 * np.arange(8))
    np.testing.assert_array_equal(sampling.speed_indices(n, budget, "x4", start=3), 3 + 4 * np.arange(8))
    np.testing.assert_array_equal(sampling.speed_indices(n, budget, "static", start=3), np.full(8, 3))
    for name, factor in sampling.SPEEDS.items():
        idx = sampling.speed_indices(n, budget, name)
        assert idx.shape == (budget,)  # the same frame budget at every speed
        assert idx[-1] - idx[0] + 1 == sampling.speed_span(budget, factor)
        np.testing.assert_array_equal(idx, sampling.speed_indices(n, budget, factor))
    # Applied to frames: fast skips, slow repeats.
    frames = np.arange(n)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    fast = frames[sampling.speed_indices(n, budget, "x4")]
    assert len(np.unique(fast[:, 0, 0, 0])) == budget and np.all(np.diff(fast[:, 0, 0, 0].astype(int)) == 4)
    assert len(np.unique(frames[sampling.speed_indices(n, budget, "x0.5")][:, 0, 0, 0])) == budget // 2
    assert len(np.unique(frames[sampling.speed_indices(n, budget, "static")][:, 0, 0, 0])) == 1


def test_speed_errors_and_random_start():
    assert sampling.speed_span(8, "x4") == 29
    with pytest.raises(NotEnoughFrames):
        sampling.speed_indices(28, 8, "x4")
    sampling.speed_indices(29, 8, "x4")  # fits exactly
    with pytest.raises(ValueError, match="unknown speed"):
        sampling.speed_indices(64, 8, "x3")
    rng = np.random.default_rng(0)
    starts = {int(sampling.random_speed_indices(32, 8, "x4", rng)[0]) for _ in range(100)}
    assert starts == {0, 1, 2, 3}
    # Composition: a speed plan over a uniformly subsampled clip indexes the source clip.
    base = sampling.uniform_indices(300, 32)
    composed = base[sampling.speed_indices(len(base), 8, "x2")]
    np.testing.assert_array_equal(composed, base[::2][:8])
