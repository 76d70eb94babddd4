"""The tower stage: per-patch labels from the world's ground truth, pretraining, probes."""
import jax
import numpy as np
import pytest
from flax import nnx

from sf2t_jax.demo import tower
from sf2t_jax.demo.tower_data import (COLOUR_CLASSES, SHAPE_CLASSES, cell_owner, frame_labels, in_patch_order,
                                      load_pairs)
from sf2t_jax.models.config import qwen2vl_tiny
from sf2t_jax.models.qwen2_vl import Qwen2VL
from sf2t_jax.video.decode import decode_video
from sf2t_jax.video.patchify import patchify_video
from sf2t_jax.video.resize import resize_frames
from sf2t_jax.world import WorldConfig, write_world
from sf2t_jax.world.build import scene_for
from sf2t_jax.world.render import owner_map, render
from sf2t_jax.world.shapes import ARM, WORLD_COLOURS, SKIN

SIZE = (56, 56)
WORLD = WorldConfig(train_clips=6, validation_clips=2, test_clips=1, height=56, width=56, num_frames=8)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    write_world(root, WORLD, progress=False)
    return root


def test_owner_map_is_what_render_draws():
    """Every pixel the owner map gives an object shows exactly that object's colour in the
    rendered frame (before any encoding), over clips with hands, several objects and zoom."""
    checked = 0
    for i in range(12):
        scene = scene_for(WORLD, "train", i)
        frames = render(scene, *SIZE)
        for t in (0, scene.num_frames // 2, scene.num_frames - 1):
            owner = owner_map(scene.tracks, t, *SIZE)
            for k, track in enumerate(scene.tracks):
                pixels = frames[t][owner == k]
                if track.role == "hand":  # palm or forearm
                    assert np.all(np.all(pixels == SKIN, -1) | np.all(pixels == ARM, -1))
                else:
                    assert np.all(pixels == WORLD_COLOURS[track.colour])
                checked += len(pixels)
    assert checked > 1000


def test_cell_owner_takes_the_majority_object_above_the_threshold():
    owner = np.full((4, 4), -1)
    owner[0, 0] = owner[0, 1] = owner[1, 0] = 2  # 3 of cell (0, 0)'s 4 pixels
    owner[1, 1] = 0
    owner[2, 2] = 1  # 1 of cell (1, 1)'s 4 pixels
    assert cell_owner(owner, 2, min_pixels=2).tolist() == [[2, -1], [-1, -1]]
    assert cell_owner(owner, 2, min_pixels=1).tolist() == [[2, -1], [-1, 1]]
    assert cell_owner(np.full((4, 4), -1), 2, min_pixels=1).tolist() == [[-1, -1], [-1, -1]]


def test_in_patch_order_is_the_tower_row_order():
    """A frame whose every 14x14 patch holds its raster index: the patch rows `patchify_video`
    gives the tower carry the indices in exactly the order `in_patch_order` puts them."""
    gh, gw = 4, 6
    grid = np.arange(gh * gw).reshape(gh, gw)
    frame = np.repeat(np.repeat(grid, 14, 0), 14, 1).astype(np.uint8)
    rows, _ = patchify_video(np.stack([frame] * 3, -1)[None], normalized=False)
    assert rows[:, 0].tolist() == in_patch_order(grid).tolist()
    assert np.all(rows == rows[:, :1])  # each row is one patch


def test_frame_labels_name_the_object_covering_each_patch(world):
    scene = scene_for(WORLD, "train", 3)
    frames = render(scene, *SIZE)
    labels = frame_labels(scene.tracks, 4, SIZE, min_cover=0.15)
    rows, _ = patchify_video(frames[[4, 4]], normalized=False)
    pixels = rows.reshape(len(rows), 3, 2, 14 * 14)[:, :, 0].transpose(0, 2, 1)  # (patches, 196, RGB)
    assert (labels["patch_colour"] > 0).any()
    for p in range(len(rows)):
        colour = COLOUR_CLASSES[labels["patch_colour"][p]]
        if colour in WORLD_COLOURS:
            painted = np.all(pixels[p] == WORLD_COLOURS[colour], -1).sum()
            assert painted >= 0.15 * 196, (p, colour, painted)
            track = next(t for t in scene.tracks if t.colour == colour)
            assert SHAPE_CLASSES[labels["patch_shape"][p]] == track.shape


def test_load_pairs_shapes_and_determinism(world):
    a = load_pairs(world, "train", SIZE, pairs_per_clip=3, gaps=(0, 2), min_cover=0.15, seed=0)
    b = load_pairs(world, "train", SIZE, pairs_per_clip=3, gaps=(0, 2), min_cover=0.15, seed=0)
    assert len(a) == 18 and a.rows.shape == (18, 16, 1176) and a.colour.shape == (18, 2, 16)
    assert a.window_colour.shape == (18, 2, 4) and a.grid_hw == (4, 4)
    assert a.clip.tolist() == sorted(a.clip.tolist()) and set(a.clip.tolist()) == set(range(6))
    for field in ("rows", "colour", "shape", "window_colour", "window_shape"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    with pytest.raises(FileNotFoundError, match="labels/nosuch.json"):
        load_pairs(world, "nosuch", SIZE, pairs_per_clip=1, gaps=(0,), min_cover=0.15, seed=0)


def test_load_pairs_show_resized_frames_and_do_not_depend_on_the_threads(world):
    """Pairs at a size the world was not rendered at: each pair's rows are two of its clip's
    frames, `gap` apart, resized as a whole clip would be; the pairs are the same with one
    decoding thread or three."""
    size, gaps = (28, 28), (0, 2)
    one = load_pairs(world, "train", size, pairs_per_clip=3, gaps=gaps, min_cover=0.15, seed=0, threads=1)
    three = load_pairs(world, "train", size, pairs_per_clip=3, gaps=gaps, min_cover=0.15, seed=0, threads=3)
    for field in ("rows", "colour", "shape", "window_colour", "window_shape", "clip"):
        assert np.array_equal(getattr(one, field), getattr(three, field)), field
    gapped = 0
    for c, clip_id in enumerate(one.ids):
        frames = resize_frames(decode_video(str(next((world / "videos").glob(f"{clip_id}.*")))).frames, size)
        shown = {(i, i + g): patchify_video(frames[[i, i + g]], normalized=False)[0]
                 for g in gaps for i in range(len(frames) - g)}
        for rows in one.rows[one.clip == c]:
            matches = [pair for pair, r in shown.items() if np.array_equal(r, rows)]
            assert matches, (clip_id, "a pair that is no two frames of its clip")
            gapped += all(j > i for i, j in matches)
    assert gapped > 0  # some pairs show two different frames


def test_window_probe_asks_each_token_which_merge_window_it_is(world):
    """Every token of every pair is a target, classed by its window in the merger's row order:
    (grid h / 2) x (grid w / 2) classes per frame, so the majority class is 1 / windows."""
    pairs = load_pairs(world, "validation", SIZE, pairs_per_clip=3, gaps=(0, 1), min_cover=0.15, seed=0)
    mask, classes = tower.probe_targets(pairs)["window"]
    gh, gw = pairs.grid_hw
    windows = (gh // 2) * (gw // 2)
    assert windows == pairs.window_colour.shape[-1] == 4  # 56x56: a 4x4 patch grid, 2x2 windows
    assert mask.all() and mask.shape == classes.shape == (len(pairs) * windows,)
    in_row_order = np.broadcast_to(np.arange(windows), (len(pairs), windows))
    assert np.array_equal(classes.reshape(len(pairs), windows), in_row_order)


def test_ridge_probe_separates_what_is_linear_and_not_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    x = rng.normal(size=(600, 8)) * 0.1
    x[np.arange(600), y] += 1.0  # the class is one coordinate
    assert tower.ridge_probe(x[:400], y[:400], x[400:], y[400:]) == 1.0
    noise = rng.normal(size=(600, 8))
    assert tower.ridge_probe(noise[:400], y[:400], noise[400:], y[400:]) < 0.5


def test_pretraining_trains_the_tower_only_and_lowers_the_loss(world):
    pairs = load_pairs(world, "train", SIZE, pairs_per_clip=4, gaps=(0, 1), min_cover=0.15, seed=0)
    model = Qwen2VL(qwen2vl_tiny(), rngs=nnx.Rngs(0))
    before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    history = tower.pretrain_tower(model.visual, pairs, tower.TowerSettings(steps=40, batch=8, lr=3e-3),
                                   heldout=pairs, log_every=20)
    after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    assert [h["step"] for h in history] == [20, 40]
    changed = jax.tree.map(lambda x, y: bool(np.any(np.asarray(x) != np.asarray(y))), before, after)
    assert all(jax.tree.leaves(changed["visual"]))  # patch embedding, blocks and merger all learn
    assert not any(jax.tree.leaves({k: v for k, v in changed.items() if k != "visual"}))  # the LLM does not
    random = Qwen2VL(qwen2vl_tiny(), rngs=nnx.Rngs(0))
    patches = tower._patches(pairs.rows, pairs.grid_hw)
    head = tower.LabelHead(64, nnx.Rngs(0))
    colour, shape = tower._window_labels(pairs.colour), tower._window_labels(pairs.shape)
    # the held-out loss logged is over these very pairs: it is below the random tower's with any head
    assert history[-1]["heldout_loss"] < float(tower.label_loss(head(random.visual(patches)), colour, shape)[0])
    probes = tower.probe_tower({"pretrained": model.visual, "random": random.visual}, pairs, pairs)
    assert set(probes) == set(tower.PROBES) and all(0.0 <= probes[p]["pretrained"] <= 1.0 for p in probes)
