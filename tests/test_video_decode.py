"""Decoding with PyAV: frame counts, pixels, selection, and every bad-input reason."""
import functools
import pickle
import struct

import numpy as np
import pytest

from sf2t_jax.video import decode as decode_lib
from sf2t_jax.video import encode_video, probe_video, sampling
from sf2t_jax.video.decode import VideoDecodeError, decode_video

NUM_FRAMES, HEIGHT, WIDTH = 12, 64, 96


def _clip(num=NUM_FRAMES, height=HEIGHT, width=WIDTH):
    """Smooth gradients plus a moving white square and a per-frame red level: easy to compress,
    and every frame is distinguishable from its neighbours."""
    y, x = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(num):
        img = np.stack([np.full_like(x, 20 * i), x * 255 // (width - 1), y * 255 // (height - 1)], -1).astype(np.uint8)
        img[8:24, 8 + 4 * i:24 + 4 * i] = 255
        frames.append(img)
    return np.stack(frames)


@pytest.fixture(scope="module")
def clip():
    return _clip()


@pytest.fixture(scope="module")
def encoded(clip):
    return {c: encode_video(clip, container=c) for c in ("mp4", "webm", "mkv", "avi")}


@pytest.mark.parametrize("container,counted_by", [("mp4", "container"), ("webm", "decode"), ("mkv", "decode"),
                                                  ("avi", "container")])
def test_decode_counts_and_pixels(tmp_path, clip, encoded, container, counted_by):
    path = tmp_path / f"clip.{container}"
    path.write_bytes(encoded[container])
    for source in (str(path), encoded[container]):
        video = decode_video(source)
        assert video.frames.shape == (NUM_FRAMES, HEIGHT, WIDTH, 3) and video.frames.dtype == np.uint8
        assert video.info.num_frames == NUM_FRAMES and video.info.counted_by == counted_by
        assert (video.info.height, video.info.width, video.info.fps) == (HEIGHT, WIDTH, 12.0)
        np.testing.assert_array_equal(video.indices, np.arange(NUM_FRAMES))
        err = np.abs(video.frames.astype(np.int16) - clip).astype(np.float64)
        assert err.mean() < 3.0, err.mean()  # lossy codecs: close, not equal
        # Each decoded frame is nearest to its own source frame (the order is right).
        dist = np.abs(video.frames[:, None].astype(np.int16) - clip[None]).mean(axis=(2, 3, 4))
        np.testing.assert_array_equal(dist.argmin(axis=1), np.arange(NUM_FRAMES))
    info = probe_video(str(path))
    assert info.num_frames == NUM_FRAMES and info.counted_by == counted_by


@pytest.mark.parametrize("container", ["mp4", "webm"])
def test_selection_matches_full_decode(encoded, container):
    full = decode_video(encoded[container]).frames
    picks = np.array([7, 0, 3, 3, 11, 7])  # unsorted, repeated
    video = decode_video(encoded[container], picks)
    np.testing.assert_array_equal(video.indices, picks)
    np.testing.assert_array_equal(video.frames, full[picks])
    plan = functools.partial(sampling.uniform_indices, num=5)
    video = decode_video(encoded[container], plan)
    np.testing.assert_array_equal(video.indices, sampling.uniform_indices(NUM_FRAMES, 5))
    np.testing.assert_array_equal(video.frames, full[video.indices])
    assert decode_video(encoded[container], np.zeros((0,), np.int64)).frames.shape == (0, HEIGHT, WIDTH, 3)


def test_over_budget_second_pass_equals_buffered(encoded):
    picks = np.array([1, 5, 9])
    buffered = decode_video(encoded["webm"], picks)
    two_pass = decode_video(encoded["webm"], picks, buffer_bytes=0)
    np.testing.assert_array_equal(buffered.frames, two_pass.frames)
    assert two_pass.info == buffered.info


def _patch_avi_frame_count(data: bytes, claim: int) -> bytes:
    """Rewrites the frame count in the AVI main header (avih) and the video stream header (strh)."""
    data = bytearray(data)
    avih, strh = data.find(b"avih"), data.find(b"strh")
    data[avih + 24:avih + 28] = struct.pack("<I", claim)  # avih.dwTotalFrames
    data[strh + 40:strh + 44] = struct.pack("<I", claim)  # strh.dwLength
    return bytes(data)


def test_header_count_slightly_high_is_recounted(encoded):
    data = _patch_avi_frame_count(encoded["avi"], NUM_FRAMES + 1)
    assert probe_video(data).num_frames == NUM_FRAMES + 1  # what the header claims
    video = decode_video(data, functools.partial(sampling.uniform_indices, num=4))
    assert video.info.num_frames == NUM_FRAMES and video.info.counted_by == "decode"
    np.testing.assert_array_equal(video.indices, sampling.uniform_indices(NUM_FRAMES, 4))


def _reason(source, *args, **kwargs):
    with pytest.raises(VideoDecodeError) as e:
        decode_video(source, *args, **kwargs)
    return e.value


def test_bad_inputs_raise_with_reason(tmp_path, encoded):
    missing = tmp_path / "missing.mp4"
    err = _reason(str(missing))
    assert (err.reason, err.path) == ("missing", str(missing))

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert _reason(str(empty)).reason == "empty_file"
    assert _reason(b"", name="key-7").reason == "empty_file"
    assert _reason(b"", name="key-7").path == "key-7"

    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 40)
    assert _reason(str(text)).reason == "not_a_video"
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert _reason(noise).reason == "not_a_video"
    assert _reason(str(tmp_path)).reason == "not_a_video"  # a directory

    for container in ("mp4", "avi", "webm"):  # cut in half
        data = encoded[container]
        err = _reason(data[: len(data) // 2], name=f"half.{container}")
        assert err.reason == "corrupt", (container, err)
    err = _reason(_patch_avi_frame_count(encoded["avi"], 3 * NUM_FRAMES))
    assert err.reason == "corrupt" and "truncated" in err.detail


def test_too_short(encoded):
    assert _reason(encoded["webm"], min_frames=NUM_FRAMES + 1).reason == "too_short"
    assert _reason(encoded["mp4"], [0, NUM_FRAMES]).reason == "too_short"
    plan = functools.partial(sampling.random_sorted_indices, num=NUM_FRAMES + 3, rng=np.random.default_rng(0))
    assert _reason(encoded["mkv"], plan).reason == "too_short"
    with pytest.raises(ValueError, match="negative"):
        decode_video(encoded["mp4"], [-1])


def test_no_video_stream_and_images(tmp_path):
    import av
    from PIL import Image

    wav = tmp_path / "tone.wav"
    with av.open(str(wav), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert _reason(str(wav)).reason == "no_video_stream"
    png = tmp_path / "frame.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(png)
    assert _reason(str(png)).reason == "not_a_video"


def test_unsupported_codec(encoded):
    # An AVI whose video fourcc names no codec FFmpeg knows.
    data = encoded["avi"]
    assert data.count(b"FMP4") >= 1
    assert _reason(data.replace(b"FMP4", b"ZQZQ")).reason == "unsupported_codec"


def test_error_is_picklable_and_checked():
    err = pickle.loads(pickle.dumps(VideoDecodeError("corrupt", "a.mp4", "bad")))
    assert (err.reason, err.path, err.detail, str(err)) == ("corrupt", "a.mp4", "bad", "a.mp4: corrupt: bad")
    with pytest.raises(ValueError, match="unknown VideoDecodeError reason"):
        VideoDecodeError("broken", "a.mp4", "")
    assert set(decode_lib.REASONS) >= {"missing", "empty_file", "not_a_video", "no_video_stream", "corrupt",
                                       "unsupported_codec", "too_short"}


@pytest.mark.parametrize("container", ["mp4", "webm", "mkv", "avi"])
def test_truncation_is_caught_or_harmless(encoded, container):
    """Cut anywhere: either the file is refused as corrupt, or at most one frame is lost."""
    data = encoded[container]
    for fraction in np.linspace(0.05, 0.95, 19):
        try:
            video = decode_video(data[: int(len(data) * fraction)], name=f"cut@{fraction:.2f}")
        except VideoDecodeError as e:
            assert e.reason == "corrupt", e
        else:
            assert video.info.num_frames >= NUM_FRAMES - 1, (fraction, video.info)
