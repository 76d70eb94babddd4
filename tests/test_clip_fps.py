"""Qwen2.5-VL's absolute-time M-RoPE from each clip's real frame rate, through the input pipeline.

transformers' Qwen2_5_VLProcessor sets `second_per_grid_ts = temporal_patch_size / fps`, where
fps is the rate of the frames it is given (qwen-vl-utils: stream fps x frames sampled / frames
in the clip). The pipeline decodes the clip, makes a fragment sample from it and encodes the
sample's frames at that rate: the positions must be `get_rope_index`'s for that fps, not for the
processor's default 2 fps. Qwen2-VL's slice-counting positions and LLaVA's 1D ones ignore fps.
"""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLConfig as HFConfig
from transformers import Qwen2_5_VLForConditionalGeneration

from sf2t_jax.fragments import CountConfig, FragmentsConfig
from sf2t_jax.input.examples import ExampleMaker
from sf2t_jax.models import family
from sf2t_jax.models.qwen2_5_vl.config import PROCESSOR_DEFAULT_FPS, qwen25vl_tiny
from sf2t_jax.models.rope_index import get_rope_index
from sf2t_jax.text import Tokenizer, build_tiny_tokenizer
from sf2t_jax.video import encode_video, sampled_fps

STREAM_FPS, CLIP_FRAMES, SIZE = 30, 24, 56


def test_sampled_fps_is_the_stream_rate_times_the_share_of_frames_kept():
    assert sampled_fps(30, 24, 8) == 10.0
    assert sampled_fps(25.0, 100, 16) == 4.0
    assert sampled_fps(None, 24, 8) is None  # the container states no rate
    with pytest.raises(ValueError, match="stream_fps=0"):
        sampled_fps(0, 24, 8)


def test_video_time_follows_fps_for_qwen25_only():
    qwen25 = qwen25vl_tiny()
    assert family.video_time(qwen25).seconds_per_slice == 2 / PROCESSOR_DEFAULT_FPS
    assert family.video_time(qwen25, 10.0).seconds_per_slice == pytest.approx(0.2)
    for name in ("qwen2vl_tiny", "llava_next_video_tiny"):
        assert family.video_time(family.preset(name), 10.0) is None


def _clip(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (CLIP_FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    path = tmp_path / "clip.mp4"
    path.write_bytes(encode_video(frames, fps=STREAM_FPS))
    return {"path": str(path), "id": "clip", "record_index": 0}


def _maker(config, tokenizer):
    # count samples of 6 to 8 frames: 3 or 4 temporal slices, enough for time to show
    fragments = FragmentsConfig(weights={"count": 1.0}, count=CountConfig(n_frames=(6, 8)))
    return ExampleMaker(tokenizer=tokenizer, fragments=fragments, seed=0, resolution=(SIZE, SIZE), slices=4,
                        max_length=128, source_frames=16, rows=family.row_format(config))


def _transformers_positions(config, input_ids, slices, fps):
    """transformers 4.49's get_rope_index for one video of `slices` slices at `fps`; it reads
    only `self.config`, so no model is built."""
    grid = SIZE // config.vision.patch_size
    owner = SimpleNamespace(config=HFConfig(**config.to_hf_dict()))
    seconds = torch.tensor([config.vision.temporal_patch_size / fps])
    pos, _ = Qwen2_5_VLForConditionalGeneration.get_rope_index(
        owner, torch.from_numpy(input_ids[None].astype(np.int64)), None, torch.tensor([[slices, grid, grid]]),
        seconds, None)
    return pos.numpy()[:, 0]


def test_pipeline_positions_are_transformers_at_the_clips_sampled_fps(tmp_path):
    config = qwen25vl_tiny()
    tokenizer = Tokenizer(build_tiny_tokenizer(1000), source="tiny:1000")
    tokenizer.check_model_config(config)
    prepared = _maker(config, tokenizer).prepare(0, _clip(tmp_path))
    shown = len(prepared.sample.frames)
    fps = STREAM_FPS * shown / CLIP_FRAMES  # 16 of 24 decoded frames at 30 fps; the sample shows `shown`
    assert fps != PROCESSOR_DEFAULT_FPS
    n, example = prepared.num_tokens, prepared.example
    ids, slices = example["input_ids"][:n], example["num_slices"]
    assert slices >= 3
    ours = example["position_ids"][:, :n]
    np.testing.assert_array_equal(ours, _transformers_positions(config, ids, slices, fps))
    # ... which is not what the processor's default rate gives: the test can tell them apart
    assert not np.array_equal(ours, _transformers_positions(config, ids, slices, PROCESSOR_DEFAULT_FPS))


@pytest.mark.parametrize("name", ["qwen2vl_tiny", "llava_next_video_tiny"])
def test_families_without_a_time_axis_ignore_the_clips_fps(name):
    """Qwen2-VL: `get_rope_index` without time arguments (one position per slice); LLaVA: 1D."""
    config = family.preset(name)
    tokenizer = Tokenizer(build_tiny_tokenizer(1000), source="tiny:1000")
    rows = family.row_format(config)
    side = rows.layout.fixed_resolution or (SIZE, SIZE)
    frames = np.zeros((6, *side, 3), np.uint8)
    slices_default, vision_default = rows.video_slices(frames)
    slices_fast, vision_fast = rows.video_slices(frames, 10.0)
    assert "video_time" not in vision_fast and vision_fast.keys() == vision_default.keys()
    np.testing.assert_array_equal(slices_default, slices_fast)
    if name == "qwen2vl_tiny":
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "hi"}]}]
        chat = rows.encode(tokenizer, messages, loss_on="none", **vision_fast)
        want, _ = get_rope_index(chat.input_ids[None], None, vision_fast["video_grid_thw"],
                                 image_token_id=config.image_token_id, video_token_id=config.video_token_id,
                                 vision_start_token_id=config.vision_start_token_id)
        np.testing.assert_array_equal(chat.position_ids, want[:, 0])


def test_scene_samples_replay_the_clip_at_the_streams_own_rate(tmp_path):
    """A scene sample (captions / scene QA) is the clip replayed at a speed over its middle, the
    benchmark scorer's plan: a new video at the stream's rate, so x1 reads as real time and x2
    as twice as fast; its positions are `get_rope_index`'s at the stream's fps."""
    from sf2t_jax.input.scene import SCENE_TASK_NAMES, SceneConfig

    config = qwen25vl_tiny()
    tokenizer = Tokenizer(build_tiny_tokenizer(1000), source="tiny:1000")
    maker = ExampleMaker(tokenizer=tokenizer, fragments=None, seed=0, resolution=(SIZE, SIZE), slices=4,
                         max_length=128, scene=SceneConfig(mode="captions", scene_frames=6),
                         task_names=SCENE_TASK_NAMES, rows=family.row_format(config))
    record = {**_clip(tmp_path), "caption": "Moving a red circle", "qa": {"task": []}}
    prepared = maker.prepare(0, record)
    assert len(prepared.sample.frames) == 6 and prepared.sample.metadata["speed"] == "x1"
    n, example = prepared.num_tokens, prepared.example
    ids, slices = example["input_ids"][:n], example["num_slices"]
    ours = example["position_ids"][:, :n]
    np.testing.assert_array_equal(ours, _transformers_positions(config, ids, slices, STREAM_FPS))
    assert not np.array_equal(ours, _transformers_positions(config, ids, slices, STREAM_FPS * 6 / CLIP_FRAMES))
