"""The Tokenizer wrapper and the deterministic tiny Qwen2-style tokenizer."""
import json
import re

import numpy as np
import pytest

from sf2t_jax.models.config import qwen2vl_2b, qwen2vl_tiny
from sf2t_jax.text import SPECIAL_TOKENS, SpecialTokenError, Tokenizer, tiny_tokenizer


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return tiny_tokenizer.write_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def test_tiny_tokenizer_is_deterministic(tiny_path, tmp_path):
    again = tiny_tokenizer.write_tiny_tokenizer(tmp_path / "tokenizer.json")
    with open(tiny_path, "rb") as a, open(again, "rb") as b:
        assert a.read() == b.read()


def test_special_ids_match_tiny_model_config(tiny_path):
    tok = Tokenizer.from_file(tiny_path)
    assert tok.vocab_size == 1000
    s = tok.special
    cfg = qwen2vl_tiny(vocab_size=1000)
    assert (s.image_pad, s.video_pad, s.vision_start, s.vision_end, s.vision_pad) == (
        cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id,
        cfg.vision_token_id)
    assert (s.endoftext, s.im_end, s.im_start) == (cfg.bos_token_id, cfg.eos_token_id, 992)
    tok.check_model_config(cfg)
    with pytest.raises(ValueError, match=re.escape("image_token_id=151655 but <|image_pad|> is 995")):
        tok.check_model_config(qwen2vl_2b())
    small = tiny_tokenizer.build_tiny_tokenizer(600)
    assert small.token_to_id("<|im_end|>") == 599 and small.token_to_id("<|im_start|>") == 592
    Tokenizer(small).check_model_config(qwen2vl_tiny(vocab_size=600))


def test_encode_decode_round_trip(tiny_path):
    tok = Tokenizer.from_file(tiny_path)
    text = "How many frames does this video contain? Über 12 frames, 中文 ok!\n\n  end"
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and ids.max() < 992  # plain text never yields special ids
    assert tok.decode(ids) == text
    assert tok.encode(" frames").size == 1  # the corpus taught it common words
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>")
    assert ids[0] == tok.special.im_start and ids[-1] == tok.special.im_end  # special strings are tokens
    assert tok.decode(ids, skip_special_tokens=True) == "user\nhi"


def test_same_ids_as_transformers_fast_tokenizer(tiny_path):
    transformers = pytest.importorskip("transformers")
    import tokenizers

    hf = transformers.Qwen2TokenizerFast(tokenizer_object=tokenizers.Tokenizer.from_file(tiny_path))
    tok = Tokenizer.from_file(tiny_path)
    for text in ["Are these two frames exactly the same?", "frames 3 to 9", "3, 1, 4, 2", " a\n\nb  c",
                 "<|vision_start|><|video_pad|><|vision_end|>Why?"]:
        assert tok.encode(text).tolist() == hf(text)["input_ids"], text


def test_missing_special_token_names_file_and_token(tiny_path, tmp_path):
    with open(tiny_path) as f:
        data = json.load(f)
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "<|video_pad|>"]
    broken = tmp_path / "tokenizer.json"
    broken.write_text(json.dumps(data))
    with pytest.raises(SpecialTokenError) as e:
        Tokenizer.from_file(broken)
    assert str(broken) in str(e.value) and "'<|video_pad|>'" in str(e.value)
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        Tokenizer.from_file(tmp_path / "nowhere")
    assert set(SPECIAL_TOKENS.values()) == set(tiny_tokenizer.TINY_SPECIAL_ORDER)
