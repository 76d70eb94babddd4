"""The world's clips, checked against decoded pixels (tiny clips: 64x64, 16 frames)."""
import io

import av
import numpy as np
import pytest

from sf2t_jax.world import templates as T
from sf2t_jax.world.build import encode_clip
from sf2t_jax.world.render import render
from sf2t_jax.world.scene import sample_scene
from sf2t_jax.world.shapes import WORLD_COLOURS

H = W = 64
FRAMES = 16


def _clip(template: str, seed: int, codec: str = "vp9"):
    """Renders, encodes and decodes one clip: (scene, decoded uint8 (T, H, W, 3))."""
    scene = sample_scene(T.spec(template), np.random.default_rng(seed), num_frames=FRAMES,
                         height=H, width=W, max_objects=3)
    data = encode_clip(render(scene, H, W), fps=12, codec=codec)
    with av.open(io.BytesIO(data)) as container:  # decode with PyAV directly
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return scene, frames


def _mask(frame: np.ndarray, colour: str, tol: int = 60) -> np.ndarray:
    """Pixels of one object colour, eroded by a cross so that codec-blended edges between two
    other colours (e.g. yellow next to skin, which can look orange) do not count."""
    m = np.abs(frame.astype(np.int32) - np.asarray(WORLD_COLOURS[colour])).max(-1) < tol
    return m & np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1)


def _centroid(frame: np.ndarray, colour: str) -> tuple[float, float]:
    ys, xs = np.nonzero(_mask(frame, colour))
    assert len(xs), f"no {colour} pixels"
    return xs.mean() + 0.5, ys.mean() + 0.5


def _actor(scene, index: int = 0):
    return [t for t in scene.tracks if t.role == "actor"][index]


@pytest.mark.parametrize("template,sign", [(T.PUSH_LR, 1), (T.PULL_LR, 1), (T.PUSH_RL, -1),
                                           (T.PULL_RL, -1)])
def test_horizontal_motion_follows_the_template(template, sign):
    for seed in range(2):
        scene, frames = _clip(template, seed)
        colour = _actor(scene).colour
        xs = np.array([_centroid(f, colour)[0] for f in frames])
        assert sign * (xs[-1] - xs[0]) > 0.3 * W, (template, xs)
        assert np.all(sign * np.diff(xs) > -1.0), f"{template}: not monotone {xs}"


@pytest.mark.parametrize("template,sign", [(T.UP, -1), (T.DOWN, 1)])
def test_vertical_motion_follows_the_template(template, sign):
    scene, frames = _clip(template, 0)
    ys = np.array([_centroid(f, _actor(scene).colour)[1] for f in frames])
    assert sign * (ys[-1] - ys[0]) > 0.3 * H, ys


def test_uncovered_object_appears_and_covered_object_disappears():
    for seed in range(2):
        scene, frames = _clip(T.UNCOVER, seed)
        colour = _actor(scene).colour
        assert _mask(frames[0], colour).sum() == 0
        assert _mask(frames[-1], colour).sum() > 10
        assert _actor(scene).visible_fraction[0] == 0.0
        assert _actor(scene).visible_fraction[-1] == 1.0
        scene, frames = _clip(T.COVER, seed)
        colour = _actor(scene).colour
        assert _mask(frames[0], colour).sum() > 10 and _mask(frames[-1], colour).sum() == 0


def test_holding_barely_moves():
    for seed in range(3):
        scene, frames = _clip(T.HOLD, seed)
        c = np.array([_centroid(f, _actor(scene).colour) for f in frames])
        assert np.ptp(c, axis=0).max() < 0.04 * W, c  # < 2.6 px at 64x64


def test_camera_approach_grows_and_moving_away_shrinks():
    scene, frames = _clip(T.APPROACH, 0)
    colour = _actor(scene).colour
    assert _mask(frames[-1], colour).sum() > 1.8 * _mask(frames[0], colour).sum()
    scene, frames = _clip(T.AWAY, 0)
    colour = _actor(scene).colour
    assert _mask(frames[-1], colour).sum() < 0.6 * _mask(frames[0], colour).sum()


def test_objects_come_to_rest_on_each_other():
    scene, frames = _clip(T.ONTO, 0)
    a, b = _actor(scene, 0), _actor(scene, 1)
    (xa, ya), (xb, yb) = _centroid(frames[-1], a.colour), _centroid(frames[-1], b.colour)
    assert abs(xa - xb) < 2.0 and ya < yb - (a.size[-1] + b.size[-1]) * H * 0.8


@pytest.mark.parametrize("template", T.world_templates())
def test_every_template_renders_and_its_tracks_match_the_pixels(template):
    """Each shape that is fully visible sits where its track says (within 2 px)."""
    scene, frames = _clip(template, 0)
    assert frames.shape == (FRAMES, H, W, 3) and frames.dtype == np.uint8
    assert 1 <= sum(t.role != "hand" for t in scene.tracks) <= 3
    checked = 0
    for track in scene.tracks:
        assert track.visible_fraction.shape == (FRAMES,)
        if track.role == "hand":
            continue
        for t in range(FRAMES):
            if track.visible_fraction[t] > 0.9:
                cx, cy = _centroid(frames[t], track.colour)
                assert np.hypot(cx - track.x[t] * W, cy - track.y[t] * H) < 2.0, (track.name, t)
                checked += 1
            elif track.visible_fraction[t] == 0.0:
                assert _mask(frames[t], track.colour).sum() == 0, (track.name, t)
    assert checked >= FRAMES  # at least one object checked in every frame on average


def test_h264_codec_decodes_too():
    scene, frames = _clip(T.PUSH_LR, 0, codec="h264")
    assert frames.shape == (FRAMES, H, W, 3)
    xs = [_centroid(f, _actor(scene).colour)[0] for f in frames]
    assert xs[-1] - xs[0] > 0.3 * W
