"""The chat template against transformers 4.49's Qwen2VLProcessor, loss masks and M-RoPE ids."""
import numpy as np
import pytest

from sf2t_jax.models.rope import get_rope_index
from sf2t_jax.text import QWEN2_VL_CHAT_TEMPLATE, Tokenizer, encode_chat, render_chat, tiny_tokenizer
from sf2t_jax.video import preprocess_image, preprocess_video

MIN_PIXELS, MAX_PIXELS = 56 * 56, 28 * 28 * 64


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return tiny_tokenizer.write_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def tok(tiny_path):
    return Tokenizer.from_file(tiny_path)


@pytest.fixture(scope="module")
def hf_processor(tiny_path):
    transformers = pytest.importorskip("transformers")
    assert transformers.__version__ == "4.49.0", "parity is pinned to transformers 4.49"
    import tokenizers
    from transformers import Qwen2TokenizerFast, Qwen2VLImageProcessor, Qwen2VLProcessor

    return Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
        tokenizer=Qwen2TokenizerFast(tokenizer_object=tokenizers.Tokenizer.from_file(tiny_path)),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


VIDEO_CHAT = [  # a step-by-step inquiry: several user/assistant turns about one video
    {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "How many frames does this video contain?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "5"}]},
    {"role": "user", "content": "Are these frames in the correct temporal order?"},
    {"role": "assistant", "content": "no"},
    {"role": "user", "content": [{"type": "text", "text": "List their positions in chronological order."}]},
    {"role": "assistant", "content": "3, 1, 4, 2, 5"},
]

IMAGE_CHAT = [
    {"role": "system", "content": "You describe frames."},
    {"role": "user", "content": [{"type": "text", "text": "Which region differs? "}, {"type": "image"},
                                 {"type": "text", "text": " and "}, {"type": "image"}]},
]


def _hf(processor, messages, add_generation_prompt, **visuals):
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return text, processor(text=[text], return_tensors="np", **visuals)


def test_video_conversation_matches_transformers(tok, hf_processor):
    frames = np.random.default_rng(0).integers(0, 256, (5, 56, 84, 3), dtype=np.uint8)  # odd count
    text, ref = _hf(hf_processor, VIDEO_CHAT, False, videos=[frames])
    assert render_chat(VIDEO_CHAT) == text
    rows, grid = preprocess_video(frames, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(rows, ref["pixel_values_videos"])
    enc = encode_chat(tok, VIDEO_CHAT, video_grid_thw=[grid])
    np.testing.assert_array_equal(enc.input_ids, ref["input_ids"][0])
    np.testing.assert_array_equal(enc.video_grid_thw, ref["video_grid_thw"])
    assert (enc.input_ids == tok.special.video_pad).sum() == np.prod(grid) // 4 == 18


def test_image_conversation_matches_transformers(tok, hf_processor):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (60, 90, 3), dtype=np.uint8), rng.integers(0, 256, (112, 56, 3), dtype=np.uint8)]
    text, ref = _hf(hf_processor, IMAGE_CHAT, True, images=images)
    assert render_chat(IMAGE_CHAT, add_generation_prompt=True) == text
    grids = [preprocess_image(im, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)[1] for im in images]
    enc = encode_chat(tok, IMAGE_CHAT, image_grid_thw=grids, add_generation_prompt=True)
    np.testing.assert_array_equal(enc.input_ids, ref["input_ids"][0])
    np.testing.assert_array_equal(enc.image_grid_thw, ref["image_grid_thw"])
    assert not enc.loss_mask.any()  # no answer yet
    assert tok.decode(enc.input_ids[-3:]) == "<|im_start|>assistant\n"


def test_vision_ids_option_matches_transformers(tok, hf_processor):
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "image"}, {"type": "text", "text": "Same?"}]}]
    # 4.49's processor.apply_chat_template drops template variables it does not know, so render
    # through the tokenizer's, which passes them to Jinja.
    text = hf_processor.tokenizer.apply_chat_template(
        messages, chat_template=QWEN2_VL_CHAT_TEMPLATE, tokenize=False, add_generation_prompt=True, add_vision_id=True)
    assert render_chat(messages, add_generation_prompt=True, add_vision_id=True) == text
    assert "Video 1: <|vision_start|><|video_pad|>" in text and "Picture 1: <|vision_start|><|image_pad|>" in text


def test_loss_mask_is_the_answers_and_their_im_end(tok):
    enc = encode_chat(tok, VIDEO_CHAT, video_grid_thw=[[3, 4, 6]])
    targets = enc.input_ids[enc.loss_mask]
    assert tok.decode(targets) == "5<|im_end|>no<|im_end|>3, 1, 4, 2, 5<|im_end|>"
    # Each masked run starts right after "<|im_start|>assistant\n" and ends at its <|im_end|>.
    starts = np.flatnonzero(np.diff(np.r_[0, enc.loss_mask.astype(int)]) == 1)
    ends = np.flatnonzero(np.diff(np.r_[enc.loss_mask.astype(int), 0]) == -1)
    assert len(starts) == 3
    for s, e in zip(starts, ends):
        assert tok.decode(enc.input_ids[s - 3:s]) == "<|im_start|>assistant\n"
        assert enc.input_ids[e] == tok.special.im_end and tok.decode(enc.input_ids[e + 1:e + 2]) == "\n"
    last = encode_chat(tok, VIDEO_CHAT, video_grid_thw=[[3, 4, 6]], loss_on="last")
    assert tok.decode(last.input_ids[last.loss_mask]) == "3, 1, 4, 2, 5<|im_end|>"
    np.testing.assert_array_equal(last.input_ids, enc.input_ids)
    labels = enc.labels()
    np.testing.assert_array_equal(labels[enc.loss_mask], targets)
    assert (labels[~enc.loss_mask] == -100).all()
    assert not encode_chat(tok, VIDEO_CHAT, video_grid_thw=[[3, 4, 6]], loss_on="none").loss_mask.any()


def test_answer_tokenization_is_unchanged_by_masking(tok):
    """The answer is encoded together with its header, as transformers does: "\\n\\n" stays one token."""
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "\nyes"}]
    enc = encode_chat(tok, messages)
    np.testing.assert_array_equal(enc.input_ids, tok.encode(render_chat(messages)))
    assert tok.decode(enc.input_ids[enc.loss_mask]).endswith("yes<|im_end|>")


def test_position_ids(tok):
    enc = encode_chat(tok, VIDEO_CHAT, video_grid_thw=[[3, 4, 6]])
    s = tok.special
    ref, delta = get_rope_index(enc.input_ids[None], None, np.array([[3, 4, 6]]), image_token_id=s.image_pad,
                                video_token_id=s.video_pad, vision_start_token_id=s.vision_start)
    np.testing.assert_array_equal(enc.position_ids, ref[:, 0])
    assert enc.position_ids.shape == (3, len(enc.input_ids)) and enc.rope_delta == int(delta[0])
    video = np.flatnonzero(enc.input_ids == s.video_pad)
    t, h, w = enc.position_ids[:, video] - enc.position_ids[0, video[0]]
    np.testing.assert_array_equal(t, np.repeat(np.arange(3), 6))  # LLM grid 3 x 2 x 3
    np.testing.assert_array_equal(h, np.tile(np.repeat(np.arange(2), 3), 3))
    np.testing.assert_array_equal(w, np.tile(np.arange(3), 6))
    end = video[-1] + 1  # <|vision_end|> follows the largest position of the block
    assert (enc.position_ids[:, end] == enc.position_ids[0, video[0]] + 3).all()
    assert enc.rope_delta == enc.position_ids.max() + 1 - len(enc.input_ids) < 0


def test_errors(tok):
    with pytest.raises(ValueError, match="1 video item.* but video_grid_thw has 0"):
        encode_chat(tok, VIDEO_CHAT)
    with pytest.raises(ValueError, match="role must be one of"):
        encode_chat(tok, [{"role": "bot", "content": "hi"}])
    with pytest.raises(ValueError, match="contains '<\\|video_pad\\|>'"):
        encode_chat(tok, [{"role": "user", "content": "look <|video_pad|>"}])
    with pytest.raises(ValueError, match="not a text, image or video item"):
        encode_chat(tok, [{"role": "user", "content": [{"type": "audio"}]}])
    with pytest.raises(ValueError, match="not divisible by merge"):
        encode_chat(tok, VIDEO_CHAT, video_grid_thw=[[3, 4, 5]])
