"""Decoded clips kept between epochs (`input.clip_cache_mb`): the same batches as decoding every
time, each clip decoded once, a byte bound, frames no task can write into."""
import pickle

import numpy as np
import pytest

from sf2t_jax.fragments import CountConfig, FragmentsConfig
from sf2t_jax.input import InputConfig, InputConfigError, InputPipeline
from sf2t_jax.input import examples as examples_module
from sf2t_jax.input.clip_cache import ClipCache
from sf2t_jax.input.fixture_clips import write_clips
from sf2t_jax.text import Tokenizer, build_tiny_tokenizer

CLIPS = 6


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_clips(root, CLIPS, num_frames=12, height=64, width=64)
    return str(root)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(build_tiny_tokenizer(1000), source="tiny")


def _batches(corpus, tokenizer, monkeypatch, **kw):
    """Every batch of three epochs over the corpus, and how many clips were decoded."""
    decoded = []
    real = examples_module.decode_video

    def counting(source, *args, **kwargs):
        decoded.append(source)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(examples_module, "decode_video", counting)
    fragments = FragmentsConfig(count=CountConfig(n_frames=(2, 6)))
    config = InputConfig(source=corpus, tokenizer="tiny", batch_size=4, max_length=256, resolution=(56, 56), seed=5,
                         num_epochs=3, fragments=fragments, **kw)
    pipeline = InputPipeline(config, tokenizer=tokenizer, process_index=0, process_count=1)
    batches = list(pipeline.iterator())
    return batches, decoded, pipeline.maker.clip_cache


def test_cached_clips_give_the_batches_decoding_gives_and_decode_once(corpus, tokenizer, monkeypatch):
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
