"""Decoded clips kept between epochs (`input.clip_cache_mb`): the same batches as decoding every
time, each clip decoded once, a byte bound, frames no task can write into."""
import pickle

import numpy as np
import pytest

from sf2t_jax.fragments import CountConfig, FragmentsConfig
from sf2t_jax.input import InputConfig, InputConfigError, InputPipeline
from sf2t_jax.input import examples as examples_module
from sf2t_jax.input.clip_cache import ClipCache, process_cache
from sf2t_jax.input.fixture_clips import write_clips
from sf2t_jax.text import Tokenizer, build_tiny_tokenizer
from sf2t_jax.video import decode_video

CLIPS = 6


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_clips(root, CLIPS, num_frames=12, height=64, width=64)
    return str(root)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(build_tiny_tokenizer(1000), source="tiny")


def _batches(corpus, tokenizer, monkeypatch, epochs=3, **kw):
    """Every batch of `epochs` passes over the corpus, the clips decoded, and the maker's cache."""
    decoded = []

    def counting(source, *args, **kwargs):
        decoded.append(source)
        return decode_video(source, *args, **kwargs)

    monkeypatch.setattr(examples_module, "decode_video", counting)
    fragments = FragmentsConfig(count=CountConfig(n_frames=(2, 6)))
    config = InputConfig(**{**dict(source=corpus, tokenizer="tiny", batch_size=4, max_length=256, resolution=(56, 56),
                                   seed=5, num_epochs=epochs, fragments=fragments), **kw})
    pipeline = InputPipeline(config, tokenizer=tokenizer, process_index=0, process_count=1)
    batches = list(pipeline.iterator())
    return batches, decoded, pipeline.maker.clip_cache


def test_cached_clips_give_the_batches_decoding_gives_and_decode_once(corpus, tokenizer, monkeypatch, tmp_path):
    corpus = str(tmp_path / "corpus")  # a source of its own: no other test's pipeline has filled the cache
    write_clips(corpus, CLIPS, num_frames=12, height=64, width=64)
    plain, plain_decodes, none = _batches(corpus, tokenizer, monkeypatch)
    cached, cached_decodes, cache = _batches(corpus, tokenizer, monkeypatch, clip_cache_mb=8)
    assert none is None and len(plain_decodes) >= 3 * CLIPS  # every epoch decodes every clip
    assert len(cached) == len(plain)
    for a, b in zip(plain, cached):
        assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert sorted(cached_decodes) == sorted(set(plain_decodes))  # each clip decoded once
    assert len(cache) == CLIPS and cache.hits >= 2 * CLIPS


def test_the_cache_keeps_at_most_its_bytes_least_recently_used_out_first():
    clip = lambda v: np.full((2, 4, 4, 3), v, np.uint8)  # 96 bytes
    cache = ClipCache(2 * 96)
    for key in "abc":
        cache.put(key, clip(ord(key)), key)
    assert cache.get("a") is None and cache.bytes == 2 * 96  # "a" went first
    assert cache.get("b")[1] == "b"  # "b" is now the most recent ...
    cache.put("d", clip(0), "d")
    assert cache.get("c") is None and cache.get("b") is not None  # ... so "c" went
    big = np.zeros((5, 4, 4, 3), np.uint8)  # 240 bytes
    assert cache.put("big", big, None) is big and cache.get("big") is None  # larger than the bound: not kept
    with pytest.raises(ValueError, match="max_bytes"):
        ClipCache(-1)


def test_cached_frames_are_read_only_and_a_pickled_cache_starts_empty():
    cache = ClipCache(1 << 20)
    frames = cache.put("a", np.zeros((2, 4, 4, 3), np.uint8), None)
    with pytest.raises(ValueError, match="read-only"):
        frames[0, 0, 0, 0] = 1  # a task writing into its clip would change every later sample
    copy = pickle.loads(pickle.dumps(cache))  # what a grain worker receives
    assert copy.max_bytes == cache.max_bytes and len(copy) == 0 and len(cache) == 1


def test_a_negative_cache_size_is_refused_naming_the_field(corpus):
    with pytest.raises(InputConfigError, match="input.clip_cache_mb"):
        InputConfig(source=corpus, tokenizer="tiny", clip_cache_mb=-1)


def test_pipelines_over_one_source_share_the_process_cache_and_others_do_not(corpus, tokenizer, monkeypatch):
    """The demo's stages read one source one after another: the second decodes nothing. A
    pipeline at another bucket, or without the cache, decodes for itself."""
    _, first, cache = _batches(corpus, tokenizer, monkeypatch, epochs=1, clip_cache_mb=8)
    assert cache is process_cache(0) and len(first) == CLIPS  # the process's cache; its bound kept
    _, second, _ = _batches(corpus, tokenizer, monkeypatch, epochs=1, clip_cache_mb=4)
    assert second == []
    _, other_bucket, _ = _batches(corpus, tokenizer, monkeypatch, epochs=1, clip_cache_mb=8, resolution=(28, 28))
    assert sorted(other_bucket) == sorted(first)
    assert process_cache(0).max_bytes == 8 << 20
