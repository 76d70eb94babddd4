"""LLaVA-NeXT-Video's chat template and its batch rows (text/llava_chat.py, models/rows.py):
token ids equal transformers 4.49's `LlavaNextVideoProcessor` (its chat template, `<video>`
expanded to the pooled frame tokens, the tokenizer's BOS), the loss mask covers only the answer
and its EOS, and the input pipeline's rows are one CLIP-normalized frame per slice with 1D
positions, exactly the pixels the model's own `frame_patches` makes.
"""
import dataclasses

import numpy as np
import pytest
import tokenizers
from transformers import (LlavaNextImageProcessor, LlavaNextVideoImageProcessor, LlavaNextVideoProcessor,
                          LlamaTokenizerFast)

from sf2t_jax.sample import Sample
from sf2t_jax.input.config import InputConfig, InputConfigError
from sf2t_jax.input.examples import ExampleMaker
from sf2t_jax.input.batching import BatchSpec, collate
from sf2t_jax.models.family import row_format
from sf2t_jax.models.llava_next_video.anyres import frame_patches
from sf2t_jax.models.llava_next_video.config import llava_next_video_tiny
from sf2t_jax.text import Tokenizer, build_tiny_tokenizer
from sf2t_jax.text.llava_chat import (LLAVA_NEXT_VIDEO_CHAT_TEMPLATE, LlavaTokens, encode_llava_chat,
                                      render_llava_chat)

VOCAB = 1000
S = 84  # the tiny tower's frame side


@pytest.fixture(scope="module")
def tiny():
    return Tokenizer(build_tiny_tokenizer(VOCAB), source=f"tiny:{VOCAB}")


@pytest.fixture(scope="module")
def hf(tiny):
    """A transformers LLaVA-NeXT-Video processor over the tiny BPE with `<video>`, `<image>` and a
    BOS-adding `<s>` like the Llama tokenizer's, and the tiny config with those ids."""
    backend = tokenizers.Tokenizer.from_str(tiny.backend.to_str())
    backend.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False)
                                for t in ("<video>", "<image>", "<s>", "</s>")])
    ids = {t: backend.token_to_id(t) for t in ("<video>", "<image>", "<s>", "</s>")}
    # LlamaTokenizerFast writes its own BOS-adding post-processor, as the Hub's Llama tokenizer does.
    fast = LlamaTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", add_bos_token=True)
    processor = LlavaNextVideoProcessor(
        video_processor=LlavaNextVideoImageProcessor(size={"shortest_edge": S}, crop_size={"height": S, "width": S}),
        image_processor=LlavaNextImageProcessor(size={"shortest_edge": S}, crop_size={"height": S, "width": S}),
        tokenizer=fast, chat_template=LLAVA_NEXT_VIDEO_CHAT_TEMPLATE, patch_size=14,
        vision_feature_select_strategy="default")
    config = dataclasses.replace(llava_next_video_tiny(VOCAB + 4), video_token_id=ids["<video>"],
                                 image_token_id=ids["<image>"], bos_token_id=ids["<s>"], eos_token_id=ids["</s>"])
    return processor, config


def _frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, S, S, 3), dtype=np.uint8)


CONVERSATION = [
    {"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]},
    {"role": "user", "content": [{"type": "text", "text": "How many frames does this video contain?"},
                                 {"type": "video"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "frames 3 to 5"}]},
    {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Are these two exactly the same?"}]},
]


# What transformers' own tests assert for the Hub processor (AutoProcessor.from_pretrained(
# "llava-hf/LLaVA-NeXT-Video-7B-hf"), whose chat_template.json cannot be read offline): tests/
# models/llava_next_video/test_processor_llava_next_video.py, `test_chat_template` (the text)
# and `test_chat_template_dict` (the Llama ids: BOS, "USER", ":", " ", <video>=32000, "\n",
# the question, " ASSISTANT:" = 319, 1799, 9047, 13566, 29901).
HUB_RENDERINGS = [
    ([{"type": "image"}, {"type": "text", "text": "What is shown in this image?"}],
     "USER: <image>\nWhat is shown in this image? ASSISTANT:"),
    ([{"type": "video"}, {"type": "text", "text": "What is shown in this video?"}],
     "USER: <video>\nWhat is shown in this video? ASSISTANT:"),
]


@pytest.mark.parametrize("content, expected", HUB_RENDERINGS)
def test_template_renders_what_the_hub_processor_renders(hf, content, expected):
    messages = [{"role": "user", "content": content}]
    processor, _ = hf
    assert processor.apply_chat_template(messages, add_generation_prompt=True) == expected
    assert render_llava_chat(messages, add_generation_prompt=True) == expected


# The processor expands every <video> by the first video's frame count (its videos are one
# stacked array), so both videos of a conversation have the same length here.
@pytest.mark.parametrize("frames", [(1, 1), (3, 3)])
def test_ids_equal_the_transformers_processor(hf, tiny, frames):
    processor, config = hf
    text = processor.apply_chat_template(CONVERSATION, add_generation_prompt=True)
    assert text == render_llava_chat(CONVERSATION, add_generation_prompt=True)
    assert text.startswith("You are a helpful assistant. USER: <video>\nHow many")
    assert text.endswith(" ASSISTANT: frames 3 to 5 USER: <video>\nAre these two exactly the same? ASSISTANT:")
    videos = [_frames(n, i) for i, n in enumerate(frames)]
    expected = processor(text=text, videos=videos, return_tensors="np")["input_ids"][0]
    ours = encode_llava_chat(tiny, CONVERSATION, LlavaTokens.from_config(config), video_frames=frames,
                             add_generation_prompt=True, loss_on="none")
    assert ours.input_ids.tolist() == expected.tolist()
    assert (ours.input_ids == config.video_token_id).sum() == sum(frames) * 9  # 6x6 patches pooled 2x2
    assert ours.position_ids.tolist() == [list(range(len(expected)))] * 3


def test_loss_mask_is_the_answer_and_its_eos(hf, tiny):
    _, config = hf
    tokens = LlavaTokens.from_config(config)
    messages = CONVERSATION[1:3]
    chat = encode_llava_chat(tiny, messages, tokens, video_frames=[2])
    targets = chat.input_ids[chat.loss_mask]
    assert targets[-1] == config.eos_token_id and chat.input_ids[-1] == config.eos_token_id
    assert tiny.decode(targets[:-1]) == " frames 3 to 5"  # byte-level BPE: the header's space opens " frames"
    first = int(np.argmax(chat.loss_mask))  # nothing of the question, video or headers before the answer
    assert tiny.decode(chat.input_ids[:first]).endswith("contain? ASSISTANT:")
    # the answer, the template's space after it (no target), the EOS
    assert chat.loss_mask[first:].tolist() == [True] * (len(targets) - 1) + [False, True]
    # The template's own text up to the EOS, which LLaVA's training appends after an answer.
    assert tiny.decode(chat.input_ids[1:-1]).replace(tiny.decode([config.video_token_id]), "") == \
        render_llava_chat(messages).replace("<video>", "")


def test_placeholder_counts_are_checked(hf, tiny):
    tokens = LlavaTokens.from_config(hf[1])
    with pytest.raises(ValueError, match=r"1 video item\(s\) but video_frames has 2"):
        encode_llava_chat(tiny, CONVERSATION[1:3], tokens, video_frames=[2, 2])
    with pytest.raises(ValueError, match="text contains '<video>'"):
        encode_llava_chat(tiny, [{"role": "user", "content": "<video> hi"}], tokens)


def test_pipeline_rows_are_clip_normalized_frames_with_1d_positions(tiny):
    config = llava_next_video_tiny(VOCAB)
    rows = row_format(config)
    maker = ExampleMaker(tokenizer=tiny, fragments=None, seed=0, resolution=(S, S), slices=4, max_length=96,
                         rows=rows)
    frames = _frames(3, 7)
    sample = Sample(task="count", frames=frames, question="How many frames?", answer="3", present="video")
    example, n = maker._encode(sample)
    ids = example["input_ids"]
    video = np.nonzero(ids == config.video_token_id)[0]
    assert video.size == 3 * 9 and example["num_slices"] == 3
    assert example["vision_index"].tolist() == video.tolist() + [96] * 9
    assert ids[0] == config.bos_token_id and ids[n - 1] == config.eos_token_id
    assert (ids[n:] == config.pad_token_id).all()
    # The space after "ASSISTANT:" is a token of its own before a digit: the model must produce it.
    assert tiny.decode(ids[example["loss_mask"] == 1][:-1]) == " 3"
    assert example["position_ids"].tolist() == [list(range(n)) + [1] * (96 - n)] * 3
    spec = BatchSpec(batch_size=2, num_processes=1, max_length=96, slices=4, grid_hw=(6, 6),
                     pad_id=config.pad_token_id, patch_dim=588, tokens_per_slice=9)
    batch = collate([dict(example, sample_index=0, record_index=0)], spec)
    np.testing.assert_array_equal(batch["vision_patches"][0, :3], frame_patches(frames, config))
    assert not batch["vision_patches"][0, 3:].any() and not batch["vision_patches"][1].any()
    assert batch["vision_index"].shape == (2, 36)


def test_geometry_is_the_family_s():
    rows = row_format(llava_next_video_tiny(VOCAB))
    base = dict(resolution=(84, 84), present="video", frame_budget=16, max_length=256,
                weights={"count": 1.0, "disorder": 1.0})
    g = InputConfig.from_dict(base).geometry_of(rows)
    assert (g.grid_hw, g.patches_per_slice, g.tokens_per_slice) == ((6, 6), 36, 9)
    assert g.slices == g.max_frames and g.max_vision_tokens == g.max_frames * 9
    with pytest.raises(InputConfigError, match=r"exactly \(84, 84\)"):
        InputConfig.from_dict(dict(base, resolution=(56, 56))).geometry_of(rows)
    with pytest.raises(InputConfigError, match="anyres tiles"):
        InputConfig.from_dict(dict(base, present="images")).geometry_of(rows)
