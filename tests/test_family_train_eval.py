"""Qwen2.5-VL through the model-family interface, as users run it: `launch.py train` of
`qwen25vl_tiny` from a converted Qwen2.5-VL checkpoint (SF²T on synthetic batches), killed and
resumed bit for bit, its export scored by `launch.py eval`; a checkpoint of the other family is
refused in one line; and the video positions of every host-side path (synthetic batches, the
fragment pipeline, the scorer's prompts) are on Qwen2.5-VL's absolute time axis.
"""
import dataclasses
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from sf2t_jax.convert.native import save_native
from sf2t_jax.eval import load_model
from sf2t_jax.finevidbench import load_source, write_benchmark
from sf2t_jax.models.family import video_time
from sf2t_jax.models.qwen2_5_vl.config import PROCESSOR_DEFAULT_FPS, qwen25vl_tiny
from sf2t_jax.models.qwen2_5_vl.model import Qwen25VL
from sf2t_jax.text import write_tiny_tokenizer
from sf2t_jax.train.metrics import read_metrics
from sf2t_jax.world import WorldConfig, write_world

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 4
TRAIN = ["--config", "configs/sf2t.py:model=qwen25vl_tiny,frames=4", "--config.input.max_length=64",
         f"--config.train.steps={STEPS}", "--config.checkpoint.every=2", "--config.log.every=1",
         "--config.model.dtype=float32", "--config.log.tensorboard=false"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("jax_cache")
    return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "JAX_COMPILATION_CACHE_DIR": str(cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A converted tiny Qwen2.5-VL checkpoint (our native format)."""
    directory = tmp_path_factory.mktemp("base") / "native"
    save_native(Qwen25VL(qwen25vl_tiny(), rngs=nnx.Rngs(7)), str(directory))
    return str(directory)


def _train(env, workdir, *extra, check=True):
    cmd = [sys.executable, os.path.join(ROOT, "launch.py"), "train", *TRAIN, "--workdir", str(workdir), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _losses(workdir):
    records = read_metrics(str(workdir))
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    return [r["loss"] for r in records]


@pytest.fixture(scope="module")
def reference(env, base, tmp_path_factory):
    """SF²T steps of qwen25vl_tiny from the converted checkpoint, never interrupted, exported."""
    workdir = tmp_path_factory.mktemp("reference")
    proc = _train(env, workdir, "--init-from", base)
    assert "model qwen25vl_tiny, method lora" in proc.stderr and f"completed at step {STEPS} of {STEPS}" in proc.stderr
    return workdir


def test_qwen25vl_trains_resumes_bit_exact_and_exports_its_family(env, base, reference, tmp_path):
    killed = _train(env, tmp_path, "--init-from", base, "--config.debug.signal_at_step=3",
                    "--config.debug.signal=SIGKILL", check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
    resumed = _train(env, tmp_path, "--init-from", base, "--config.debug.signal_at_step=3",
                     "--config.debug.signal=SIGKILL")
    assert "resumed from step 2" in resumed.stderr
    assert _losses(tmp_path) == _losses(reference)  # bit for bit
    assert len(set(_losses(reference))) > 1  # it trained

    # The export is a Qwen2.5-VL checkpoint: config.json names the family, it loads as one, and
    # the merged adapters moved its LLM projections away from the base's.
    config = json.loads((reference / "export" / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl"
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    exported, start = load_model(str(reference)), load_model(base)
    assert type(exported) is Qwen25VL and exported.config == qwen25vl_tiny()
    q_proj = lambda m: np.asarray(m.model.layers[0].self_attn.q_proj.kernel[...])
    assert not np.array_equal(q_proj(exported), q_proj(start))
    np.testing.assert_array_equal(np.asarray(exported.visual.blocks[0].mlp.gate_proj.kernel[...]),
                                  np.asarray(start.visual.blocks[0].mlp.gate_proj.kernel[...]))  # ViT frozen


def test_export_is_scored_by_launch_eval(env, reference, tmp_path):
    root = tmp_path
    write_world(root / "world", WorldConfig(train_clips=0, validation_clips=0, test_clips=2, height=64, width=64,
                                            num_frames=16, seed=5), progress=False)
    write_benchmark(load_source(root / "world", ("test",)), root / "bench", ("test",))
    tokenizer = write_tiny_tokenizer(root / "tokenizer.json")
    out = root / "eval"
    proc = subprocess.run(
        [sys.executable, "launch.py", "eval", "--config", "configs/eval_finevidbench.py", "--checkpoint",
         str(reference), "--out", str(out), f"--config.benchmark={root / 'bench' / 'finevidbench_test.jsonl'}",
         f"--config.videos={root / 'world'}", f"--config.tokenizer={tokenizer}", "--config.video.scene_frames=4",
         "--config.video.size=(56, 56)", "--config.max_videos=1", "--config.controls="],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results["metrics"]) == {"loglik", "generate"}
    assert results["meta"]["items"] > 0
    predictions = [json.loads(line) for line in open(out / "predictions.jsonl")]
    assert len(predictions) == 2 * results["meta"]["items"]


def test_a_checkpoint_of_another_family_is_refused_in_one_line(env, base, tmp_path):
    workdir = tmp_path / "work"
    proc = _train(env, workdir, "--init-from", base, "--config", "configs/sf2t.py:model=qwen2vl_tiny,frames=4",
                  check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error: init_from=") and "Qwen2.5-VL checkpoint (model_type 'qwen2_5_vl')" in error
    assert "model.name='qwen2vl_tiny' is a Qwen2-VL preset (model_type 'qwen2_vl')" in error
    assert not (workdir / "checkpoints").exists() and not (workdir / "config.json").exists()


# ----------------------------------------------------------------------------------------
# Video positions on the absolute time axis, on every host-side path
# ----------------------------------------------------------------------------------------
def _slice_times(position_ids, input_ids, video_token_id, tokens_per_slice):
    """Temporal M-RoPE positions of each temporal slice's video tokens, relative to the first."""
    t = np.asarray(position_ids)[0][np.asarray(input_ids) == video_token_id]
    per_slice = t.reshape(-1, tokens_per_slice)
    assert (per_slice == per_slice[:, :1]).all()
    return (per_slice[:, 0] - per_slice[0, 0]).tolist()


def _video_runs(input_ids, position_ids, video_token_id):
    """The temporal positions of each contiguous run of video tokens in one packed row."""
    is_video = np.asarray(input_ids) == video_token_id
    edges = np.flatnonzero(np.diff(np.concatenate([[0], is_video.astype(int), [0]])))
    return [np.asarray(position_ids)[0, a:b].tolist() for a, b in zip(edges[::2], edges[1::2])]


def _expected_times(slices, config, fps=PROCESSOR_DEFAULT_FPS):
    """transformers 4.49's Qwen2.5-VL rope index for frames at `fps` (default: the processor's):
    slice t at floor(t * temporal_patch_size / fps * tokens_per_second)."""
    seconds = config.vision.temporal_patch_size / fps
    return [int(np.floor(t * seconds * config.vision.tokens_per_second)) for t in range(slices)]


def test_synthetic_batches_place_video_slices_in_time():
    import ml_collections

    from sf2t_jax.train.synthetic_batches import Geometry, SyntheticSamples

    cfg = qwen25vl_tiny()
    input_config = ml_collections.ConfigDict(dict(resolution=(56, 56), present="video", frame_budget=6, slices=0,
                                                  max_length=64))
    g = Geometry(input_config, cfg)
    row = SyntheticSamples(g, cfg, seed=0, weights={"count": 1.0})(0)
    times = _slice_times(row["position_ids"], row["input_ids"], cfg.video_token_id, g.tokens_per_slice)
    assert times == _expected_times(3, cfg) == [0, 2, 4]


def test_fragment_pipeline_and_scorer_prompts_place_video_slices_in_time(tmp_path):
    from sf2t_jax.eval import EvalSettings, evaluate, load_items
    from sf2t_jax.eval.batching import build_prompt
    from sf2t_jax.eval.inquiry import Inquiry
    from sf2t_jax.eval.scorer import ModelScorer
    from sf2t_jax.eval.visuals import VisualLoader
    from sf2t_jax.sample import Sample
    from sf2t_jax.input.examples import ExampleMaker
    from sf2t_jax.text import Tokenizer, build_tiny_tokenizer

    cfg = qwen25vl_tiny()
    tok = Tokenizer(build_tiny_tokenizer(1000), source="tiny:1000")
    tok.check_model_config(cfg)
    write_world(tmp_path / "world", WorldConfig(train_clips=0, validation_clips=0, test_clips=1, height=64, width=64,
                                                num_frames=16, seed=5), progress=False)
    write_benchmark(load_source(tmp_path / "world", ("test",)), tmp_path / "bench", ("test",))
    items = load_items(tmp_path / "bench" / "finevidbench_test.jsonl")
    settings = EvalSettings(scene_frames=4, size=(56, 56), batch_size=8, progress_every_s=0)
    scorer_model = Qwen25VL(cfg, rngs=nnx.Rngs(0))
    scorer = ModelScorer(scorer_model, settings, tok)
    assert scorer.row_format.video_time == video_time(cfg)
    loader = VisualLoader(str(tmp_path / "world"), settings, rows=scorer.row_format)
    inquiry = Inquiry(items)
    stream = loader.clip(items[0].video_id).info
    assert stream.fps > 0 and stream.num_frames == 16
    # A scene item replays the clip at the stream's own rate; a fragment item's frames are a
    # sample of the clip (stream rate x frames shown / clip frames): each at its own time scale.
    scene = next(it for it in items if it.frames is None and it.speed == "x1")
    fragment = next(it for it in items if it.frames is not None and len(it.frames) >= 4)
    for item, fps in ((scene, stream.fps), (fragment, stream.fps * len(fragment.frames) / stream.num_frames)):
        prompt = build_prompt(item, inquiry, loader, tok, settings)
        slices = len(prompt.slices)
        assert slices >= 2
        times = _slice_times(prompt.position_ids, prompt.input_ids, cfg.video_token_id, 4)
        assert times == _expected_times(slices, cfg, fps), (item.item_id, fps)
    assert _expected_times(4, cfg, stream.fps) != _expected_times(4, cfg)  # the clip's rate matters here

    # The runner builds every prompt the same way (the scorer's rows, each clip's rate).
    class Recording(ModelScorer):
        rows = []

        def dispatch(self, batch):
            self.rows += [(batch.input_ids[r], batch.position_ids[:, r]) for r in range(len(batch.input_ids))]
            return super().dispatch(batch)

    recording = Recording(scorer_model, dataclasses.replace(settings, methods=("loglik",), max_videos=1), tok)
    evaluate(recording, items, recording.settings, tokenizer=tok, video_root=str(tmp_path / "world"))
    runs = [run for ids, positions in recording.rows for run in _video_runs(ids, positions, cfg.video_token_id)]
    assert runs and all(len(t) % 4 == 0 for t in runs)
    alone = set()
    for item in items:
        prompt = build_prompt(item, inquiry, loader, tok, settings)
        alone.add(tuple(_slice_times(prompt.position_ids, prompt.input_ids, cfg.video_token_id, 4)))
    assert {tuple(t - times[0] for t in times[::4]) for times in runs} <= alone

    maker = ExampleMaker(tokenizer=tok, fragments=None, seed=0, resolution=(56, 56), slices=2, max_length=64,
                         video_time=video_time(cfg))
    frames = np.zeros((4, 56, 56, 3), np.uint8)
    sample = Sample(task="count", frames=frames, question="how many?", answer="4", present="video")
    example, _ = maker._encode(sample)
    times = _slice_times(example["position_ids"], example["input_ids"], cfg.video_token_id, 4)
    assert times == _expected_times(2, cfg)


# ----------------------------------------------------------------------------------------
# LLaVA-NeXT-Video through the same interface: one-frame slices, 1D positions
# ----------------------------------------------------------------------------------------
LLAVA_TRAIN = ["--config", "configs/sf2t.py:model=llava_next_video_tiny,frames=4", "--config.input.max_length=64",
               f"--config.train.steps={STEPS}", "--config.checkpoint.every=2", "--config.log.every=1",
               "--config.model.dtype=float32", "--config.log.tensorboard=false"]


def test_llava_next_video_trains_from_a_converted_checkpoint_and_exports_its_family(env, tmp_path):
    from sf2t_jax.models.llava_next_video.config import llava_next_video_tiny
    from sf2t_jax.models.llava_next_video.model import LlavaNextVideo

    base = tmp_path / "base"
    save_native(LlavaNextVideo(llava_next_video_tiny(), rngs=nnx.Rngs(7)), str(base))
    workdir = tmp_path / "work"
    cmd = [sys.executable, os.path.join(ROOT, "launch.py"), "train", *LLAVA_TRAIN, "--workdir", str(workdir),
           "--init-from", str(base)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model llava_next_video_tiny, method lora" in proc.stderr
    assert f"completed at step {STEPS} of {STEPS}" in proc.stderr
    losses = _losses(workdir)
    assert len(set(losses)) > 1 and all(np.isfinite(losses))

    config = json.loads((workdir / "export" / "config.json").read_text())
    assert config["model_type"] == "llava_next_video"
    exported, start = load_model(str(workdir)), load_model(str(base))
    assert type(exported) is LlavaNextVideo and exported.config == llava_next_video_tiny()
    q_proj = lambda m: np.asarray(m.model.layers[0].self_attn.q_proj.kernel[...])
    projector = lambda m: np.asarray(m.multi_modal_projector.linear_1.kernel[...])
    tower = lambda m: np.asarray(m.vision_tower.layers[0].mlp.fc1.kernel[...])
    assert not np.array_equal(q_proj(exported), q_proj(start))  # merged adapters
    assert not np.array_equal(projector(exported), projector(start))  # trained next to them
    np.testing.assert_array_equal(tower(exported), tower(start))  # CLIP frozen


def test_llava_synthetic_rows_are_one_frame_slices_with_1d_positions():
    import ml_collections

    from sf2t_jax.models.llava_next_video.config import llava_next_video_tiny
    from sf2t_jax.train.synthetic_batches import Geometry, SyntheticSamples

    cfg = llava_next_video_tiny()
    input_config = ml_collections.ConfigDict(dict(resolution=(84, 84), present="video", frame_budget=4, slices=0,
                                                  max_length=64))
    g = Geometry(input_config, cfg)
    assert (g.slices, g.grid_hw, g.tokens_per_slice, g.patch_dim) == (4, (6, 6), 9, 588)
    row = SyntheticSamples(g, cfg, seed=0, weights={"count": 1.0})(0)
    assert row["vision_patches"].shape == (4, 36, 588)
    assert (row["input_ids"] == cfg.video_token_id).sum() == 4 * 9
    n = int(row["attention_mask"].sum())
    np.testing.assert_array_equal(row["position_ids"], np.broadcast_to(np.r_[np.arange(n), np.ones(64 - n)], (3, 64)))
    for bad, message in (((56, 56), r"exactly \(84, 84\)"), ):
        with pytest.raises(ValueError, match=message):
            Geometry(ml_collections.ConfigDict(dict(input_config, resolution=bad)), cfg)
    with pytest.raises(ValueError, match=r"present='images'.*tiles images"):
        Geometry(ml_collections.ConfigDict(dict(input_config, present="images")), cfg)


def test_llava_next_video_trains_on_decoded_videos(env, tmp_path):
    """data=videos through the fragment pipeline: one CLIP frame per slice, the USER/ASSISTANT
    template, 1D positions (tests/test_llava_chat.py checks the rows themselves)."""
    from sf2t_jax.input.fixture_clips import write_clips

    clips = write_clips(tmp_path / "clips", 4)
    workdir = tmp_path / "work"
    cmd = [sys.executable, os.path.join(ROOT, "launch.py"), "train", "--config",
           "configs/sf2t.py:model=llava_next_video_tiny,frames=4,data=videos", "--config.input.max_length=128", "--config.input.tokenizer=tiny:1000",
           f"--config.input.source={os.path.dirname(clips[0])}", "--config.input.num_epochs=0",
           f"--config.train.steps={STEPS}", "--config.log.every=1", "--config.model.dtype=float32",
           "--config.log.tensorboard=false", "--config.export.final=false", "--workdir", str(workdir)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model llava_next_video_tiny, method lora" in proc.stderr
    assert "4 slices of (6, 6) patches" in proc.stderr  # one 84x84 frame per slice
    losses = _losses(workdir)
    assert len(set(losses)) > 1 and all(np.isfinite(losses))
