"""Each fragment task checked by construction, from the pixels of the frames it returns.

Synthetic clips: a greyscale random texture that scrolls 3 px per frame, so every frame is
unique (it can be found in the clip by exact match), consecutive frames differ, and no pixel
is ever a (saturated) sprite colour.
"""
import pickle
import re

import numpy as np
import pytest

from sf2t_jax import fragments as F
from sf2t_jax.fragments import edits, sprites

CELL_GRID = [["top left", "top center", "top right"],
             ["middle left", "center", "middle right"],
             ["bottom left", "bottom center", "bottom right"]]


def moving_clip(t=24, h=32, w=32, seed=0):
    """uint8 (t, h, w, 3) greyscale, every frame distinct. Needs 3 * (t - 1) + w <= 4 * w."""
    tex = np.random.default_rng(seed).integers(0, 256, (h, 4 * w), dtype=np.uint8)
    frames = np.stack([tex[:, 3 * k: 3 * k + w] for k in range(t)])
    return np.repeat(frames[..., None], 3, axis=-1)


def identify(clip, shown):
    """Clip index of each shown frame, by exact pixel match."""
    lookup = {f.tobytes(): k for k, f in enumerate(clip)}
    return [lookup[f.tobytes()] for f in shown]


def samples(fn, clip, config, n, seed=0):
    return [fn(clip, F.sample_rng(seed, i), config) for i in range(n)]


# ----------------------------------------------------------------------------------------
# count
# ----------------------------------------------------------------------------------------
def test_count_answer_is_the_number_of_frames_shown():
    clip = moving_clip()
    for s in samples(F.make_count, clip, F.CountConfig(), 60):
        assert s.answer == str(len(s.frames)) and 2 <= len(s.frames) <= 16
        idx = identify(clip, s.frames)
        assert idx == sorted(set(idx))  # distinct clip frames, in order


def test_count_caps_n_at_clip_length():
    clip = moving_clip(t=5)
    counts = {int(s.answer) for s in samples(F.make_count, clip, F.CountConfig(), 60)}
    assert counts == {2, 3, 4, 5}


# ----------------------------------------------------------------------------------------
# rearrange and disorder
# ----------------------------------------------------------------------------------------
def test_rearrange_answer_restores_true_order():
    clip = moving_clip()
    for s in samples(F.make_rearrange, clip, F.RearrangeConfig(), 100):
        n = len(s.frames)
        assert re.fullmatch(r"\d+(, \d+)+", s.answer)
        positions = [int(p) for p in s.answer.split(", ")]
        assert sorted(positions) == list(range(1, n + 1)) and 3 <= n <= 8
        shown_idx = identify(clip, s.frames)
        assert shown_idx != sorted(shown_idx)  # really shuffled
        restored = identify(clip, s.frames[np.array(positions) - 1])
        assert restored == sorted(restored)
        assert shown_idx == s.metadata["source_indices"]


def test_disorder_yes_means_in_order_from_pixels():
    clip = moving_clip()
    orders = set()
    for s in samples(F.make_disorder, clip, F.DisorderConfig(), 120):
        idx = identify(clip, s.frames)
        assert idx == s.metadata["source_indices"]
        in_order = all(a < b for a, b in zip(idx, idx[1:]))
        assert s.answer == ("yes" if in_order else "no")
        orders.add(s.metadata["order"])
        if s.metadata["order"] == "adjacent_swap":
            assert sum(a > b for a, b in zip(idx, idx[1:])) == 1
    assert orders == {"in_order", "shuffle", "adjacent_swap"}


def test_disorder_reorder_questions_swap_the_answer_and_leave_the_default_samples_alone():
    clip = moving_clip()
    reorder = ("Do these frames need to be put back in order?",)
    default = samples(F.make_disorder, clip, F.DisorderConfig(), 120)
    both = samples(F.make_disorder, clip, F.DisorderConfig(reorder_questions=reorder), 120)
    asked = {"spec": 0, "reorder": 0}
    for s, d in zip(both, default):
        idx = identify(clip, s.frames)
        in_order = all(a < b for a, b in zip(idx, idx[1:]))
        if s.question in reorder:
            assert s.answer == ("no" if in_order else "yes"), s.metadata
            asked["reorder"] += 1
        else:
            assert s.answer == ("yes" if in_order else "no"), s.metadata
            asked["spec"] += 1
        # the frames and their order are drawn as without the field
        assert s.metadata["source_indices"] == d.metadata["source_indices"]
    assert min(asked.values()) > 20 and {s.answer for s in both if s.question in reorder} == {"yes", "no"}
    # an empty tuple (the default) draws the same questions: samples identical to the spec's
    def key(s):
        return s.question, s.answer, s.metadata, s.frames.tobytes()

    assert [key(s) for s in samples(F.make_disorder, clip, F.DisorderConfig(reorder_questions=()), 120)] == [
        key(s) for s in default]
    with pytest.raises(ValueError, match=r"DisorderConfig\.reorder_questions: expected a non-empty tuple"):
        F.DisorderConfig(reorder_questions=("",))
    # the reorder polarity alone: every answer is "yes" exactly when the frames are permuted
    alone = samples(F.make_disorder, clip, F.DisorderConfig(questions=(), reorder_questions=reorder), 60)
    assert {s.question for s in alone} == set(reorder)
    assert all(s.answer == ("no" if s.metadata["order"] == "in_order" else "yes") for s in alone)
    with pytest.raises(ValueError, match=r"DisorderConfig\.questions: expected a non-empty tuple"):
        F.DisorderConfig(questions=())


def test_order_tasks_never_show_duplicate_frames():
    # Every frame twice in a row, as a frame-rate conversion makes: swapping two copies
    # would change nothing visible, so copies must never be shown together.
    clip = np.repeat(moving_clip(t=12), 2, axis=0)
    for fn, config in ((F.make_disorder, F.DisorderConfig()),
                       (F.make_rearrange, F.RearrangeConfig())):
        for s in samples(fn, clip, config, 60):
            flat = s.frames.reshape(len(s.frames), -1)
            assert len({f.tobytes() for f in flat}) == len(flat)
            if s.answer != "yes":  # a "no" (or shuffled) sequence visibly differs from sorted
                order = np.argsort(s.metadata["source_indices"])
                assert not np.array_equal(s.frames, s.frames[order])


def test_order_tasks_skip_near_static_clip():
    noise = np.random.default_rng(0).random((16, 32, 32, 1)) < 0.02  # 2% of pixels, 1 level
    clip = np.repeat((np.uint8(100) + noise).astype(np.uint8), 3, axis=-1)
    for fn in (F.make_disorder, F.make_rearrange):
        with pytest.raises(F.SampleSkip) as e:
            fn(clip, F.sample_rng(0, 0))
        assert e.value.reason == "near_static"
    for fn in (F.make_count, F.make_consistency, F.make_localize):  # order-free: still served
        assert fn(clip, F.sample_rng(0, 0)).frames.dtype == np.uint8


def test_order_tasks_skip_clip_with_too_few_distinct_frames():
    clip = np.repeat(moving_clip(t=2), 8, axis=0)  # two distinct frames, 16 frames
    with pytest.raises(F.SampleSkip) as e:
        F.make_rearrange(clip, F.sample_rng(0, 0))
    assert e.value.reason == "too_few_distinct"


@pytest.mark.parametrize("fn, t", [(F.make_disorder, 3), (F.make_rearrange, 2),
                                   (F.make_localize, 5), (F.make_count, 1),
                                   (F.make_consistency, 0)])
def test_too_short_clip_is_skipped(fn, t):
    with pytest.raises(F.SampleSkip) as e:
        fn(moving_clip()[:t], F.sample_rng(0, 0))
    assert e.value.reason == "too_short"


def test_skip_survives_pickling():
    skip = pickle.loads(pickle.dumps(F.SampleSkip("near_static", "disorder", "0.1 < 1.0")))
    assert (skip.reason, skip.task, skip.detail) == ("near_static", "disorder", "0.1 < 1.0")


# ----------------------------------------------------------------------------------------
# consistency and edits
# ----------------------------------------------------------------------------------------
def changed_cell(a, b):
    """(name, mean |change| in it) of the one 3x3 cell holding every changed pixel; 36 px frames."""
    ys, xs = np.nonzero(np.any(a != b, axis=-1))
    rows, cols = set(ys // 12), set(xs // 12)
    assert len(rows) == 1 and len(cols) == 1, "changes spill over more than one cell"
    r, c = rows.pop(), cols.pop()
    cell = np.abs(a.astype(int) - b.astype(int))[12 * r:12 * r + 12, 12 * c:12 * c + 12]
    return CELL_GRID[r][c], cell.mean()


def test_consistency_same_pairs_identical_and_different_pairs_visibly_not():
    clip = moving_clip(w=36, h=36)
    kinds = set()
    for s in samples(F.make_consistency, clip, F.ConsistencyConfig(p_where=0.0), 120):
        a, b = s.frames
        assert s.answer in ("yes", "no")
        if s.answer == "yes":
            assert np.array_equal(a, b)
        else:
            assert edits.cell_changes(a, b).max() >= 4.0  # visible, not just different
        kinds.add(s.metadata["kind"])
    assert kinds == {"identical", "next", "edit"}


def test_consistency_where_answer_names_the_changed_cell():
    clip = moving_clip(w=36, h=36)
    applied = set()
    for s in samples(F.make_consistency, clip, F.ConsistencyConfig(p_where=1.0), 150):
        name, change = changed_cell(*s.frames)
        assert s.answer == name and change >= 16.0
        applied.add(s.metadata["edit"])
    assert set(F.EDIT_KINDS) <= applied


@pytest.mark.parametrize("kind", F.EDIT_KINDS)
def test_edits_are_confined_and_visible_even_on_flat_frames(kind):
    rng = np.random.default_rng(0)
    textured = moving_clip(w=36, h=36)[0]
    flat = np.full((36, 36, 3), 255, np.uint8)  # a blur or colour shift up does nothing here
    config = F.EditConfig(kinds=(kind,))
    for image in (textured, flat):
        for cell in range(9):
            edited, applied = edits.edit_cell(image, cell, rng, config)
            name, change = changed_cell(image, edited)
            assert name == F.CELL_NAMES[cell] and change >= config.min_change
            assert applied in (kind, edits.SOLID_PATCH)
    assert edits.edit_cell(flat, 4, rng, F.EditConfig(kinds=("blur",)))[1] == "solid_patch"


def test_next_pairs_fall_back_to_edits_on_static_clip():
    clip = np.repeat(moving_clip(w=36, h=36)[:1], 10, axis=0)  # ten identical frames
    config = F.ConsistencyConfig(p_where=0.0, p_identical=0.0, different_kinds=("next",))
    for s in samples(F.make_consistency, clip, config, 20):
        assert s.answer == "no" and s.metadata["kind"] == "edit"
        assert not np.array_equal(*s.frames)


# ----------------------------------------------------------------------------------------
# localize
# ----------------------------------------------------------------------------------------
SPRITE_NAME = re.compile(rf"the (({'|'.join(sprites.SPRITE_COLORS)}) ({'|'.join(sprites.SPRITE_SHAPES)}))\b")


def expected_localize_answer(question, visible, config):
    """The answer implied by the question wording and the frames the sprite is seen in."""
    name = SPRITE_NAME.search(question).group(1)
    s, e = visible[0], visible[-1]
    if question in {q.format(sprite=name) for q in config.span_questions}:
        return f"frame {s}" if s == e else f"frames {s} to {e}"
    if question in {q.format(sprite=name) for q in config.appear_questions}:
        return f"frame {s}"
    assert question in {q.format(sprite=name) for q in config.disappear_questions}
    return f"frame {e + 1}"


def test_localize_answer_matches_frames_with_sprite_pixels():
    clip, config = moving_clip(), F.LocalizeConfig()
    variants = set()
    for s in samples(F.make_localize, clip, config, 150):
        color = SPRITE_NAME.search(s.question).group(2)
        hits = np.all(s.frames == np.array(sprites.SPRITE_COLORS[color], np.uint8), axis=-1)  # (N,H,W)
        visible = [k + 1 for k in range(len(s.frames)) if hits[k].any()]
        assert visible == list(range(visible[0], visible[-1] + 1))  # one contiguous span
        assert all(np.array_equal(hits[k - 1], hits[visible[0] - 1]) for k in visible)
        assert s.answer == expected_localize_answer(s.question, visible, config)
        untouched = [k for k in range(len(s.frames)) if k + 1 not in visible]
        assert np.array_equal(s.frames[untouched],
                              clip[np.array(s.metadata["source_indices"])[untouched]])
        variants.add(s.metadata["variant"])
        if s.metadata["variant"] == "disappear":
            assert visible[-1] < len(s.frames)
    assert variants == {"span", "appear", "disappear"}


def test_every_shape_renders_at_the_smallest_size():
    for shape in F.SPRITE_SHAPES:
        rgb, alpha = sprites.render_sprite(shape, "red", 6)
        assert (np.all(rgb == sprites.SPRITE_COLORS["red"], axis=-1) & alpha).sum() >= 6, shape


# ----------------------------------------------------------------------------------------
# purity, presentation, bad input, configs
# ----------------------------------------------------------------------------------------
def test_tasks_never_modify_the_input_clip():
    clip = moving_clip()
    before = clip.copy()
    for i in range(20):
        for name in F.TASK_NAMES:
            F.make_sample(clip, 0, i, task=name)
    assert np.array_equal(clip, before)


def test_present_mode_is_carried():
    config = F.FragmentsConfig(count=F.CountConfig(present="images"))
    assert F.make_sample(moving_clip(), 0, 0, config, task="count").present == "images"
    assert F.make_sample(moving_clip(), 0, 0, config, task="disorder").present == "video"


def test_bad_frames_are_clear_errors():
    with pytest.raises(ValueError, match=r"frames: expected a uint8 array of shape \(T, H, W, 3\)"):
        F.make_count(moving_clip().astype(np.float32), F.sample_rng(0, 0))
    with pytest.raises(ValueError, match="at least 8x8"):
        F.make_localize(moving_clip()[:, :6, :6], F.sample_rng(0, 0))


@pytest.mark.parametrize("make, match", [
    (lambda: F.CountConfig(n_frames=(5, 3)), r"CountConfig\.n_frames: expected"),
    (lambda: F.DisorderConfig(p_shuffled=1.5), r"DisorderConfig\.p_shuffled"),
    (lambda: F.LocalizeConfig(shapes=("blob",)), r"LocalizeConfig\.shapes.*'heart'"),
    (lambda: F.LocalizeConfig(span_questions=("Where is the {colour}?",)),
     r"span_questions\[0\]: unknown placeholder.*colour.*allowed: \['sprite'\]"),
    (lambda: F.RearrangeConfig(present="gif"), r"RearrangeConfig\.present.*'video'"),
    (lambda: F.EditConfig(min_change=100.0), r"EditConfig\.min_change"),
    (lambda: F.FragmentsConfig(weights={"count": 1.0, "ordering": 1.0}),
     r"unknown fragment task 'ordering'; known tasks: count, consistency, localize, "
     r"disorder, rearrange"),
    (lambda: F.FragmentsConfig(weights={"count": 0.0}), r"at least one task"),
    (lambda: F.FragmentsConfig(weights={"count": -1.0}), r"weights\['count'\]"),
    (lambda: F.make_task("ordering", moving_clip(), F.sample_rng(0, 0)),
     r"unknown fragment task 'ordering'"),
])
def test_config_errors_name_the_field(make, match):
    with pytest.raises(ValueError, match=match):
        make()
