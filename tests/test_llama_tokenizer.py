"""LLaVA-NeXT-Video with a Llama-style `tokenizer.json` (text/tiny_llama_tokenizer.py: the Hub
file's pipeline of a "▁"-prepending normalizer, no pre-tokenizer, BPE with byte fallback):
it loads without the Qwen special tokens, the chat template's ids equal transformers'
`LlavaNextVideoProcessor` over `LlamaTokenizerFast`, every answer continues the generation
prompt as training targets it, and `launch.py train` runs the family from decoded videos with it.
A Qwen-VL model given it is refused at start, naming the file."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tokenizers
from transformers import LlavaNextImageProcessor, LlavaNextVideoImageProcessor, LlavaNextVideoProcessor
from transformers import LlamaTokenizerFast

from sf2t_jax.errors import InputError
from sf2t_jax.models.family import row_format
from sf2t_jax.models.llava_next_video.config import llava_next_video_tiny
from sf2t_jax.models.rows import QWEN2_VL_ROWS
from sf2t_jax.text import SpecialTokenError, Tokenizer, build_tiny_llama_tokenizer, write_tiny_llama_tokenizer
from sf2t_jax.text.llava_chat import LLAVA_NEXT_VIDEO_CHAT_TEMPLATE, LlavaTokens, encode_llava_answer, encode_llava_chat
from test_llava_chat import CONVERSATION

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 1000
S = 84  # the tiny tower's frame side
CONFIG = llava_next_video_tiny(VOCAB)
TOKENS = LlavaTokens.from_config(CONFIG)


@pytest.fixture(scope="module")
def llama():
    return Tokenizer(build_tiny_llama_tokenizer(VOCAB), source=f"tiny-llama:{VOCAB}")


def test_the_llama_pipeline_and_the_ids_the_tiny_model_expects(llama):
    backend = llama.backend
    assert backend.to_str() == build_tiny_llama_tokenizer(VOCAB).to_str()  # deterministic
    assert [backend.token_to_id(t) for t in ("<unk>", "<s>", "<video>", "<image>", "</s>")] == [
        0, CONFIG.bos_token_id, CONFIG.video_token_id, CONFIG.image_token_id, CONFIG.eos_token_id]
    assert llama.vocab_size == VOCAB and backend.pre_tokenizer is None
    # Every space is a word start; text the merges never saw falls back to bytes, and decodes back.
    text = "Moving the red circle left: 5 frames, é 中"
    encoding = backend.encode(text, add_special_tokens=False)
    assert encoding.tokens[0].startswith("\u2581") and "<0xE4>" in encoding.tokens
    assert llama.decode(encoding.ids) == text
    assert backend.encode("hi").ids[0] == CONFIG.bos_token_id  # the post-processor's BOS
    with pytest.raises(SpecialTokenError, match=r"^tiny-llama:1000: not a Qwen2 vocabulary"):
        llama.special
    with pytest.raises(SpecialTokenError, match="not a Qwen2 vocabulary"):
        QWEN2_VL_ROWS.check_tokenizer(llama)
    row_format(CONFIG).check_tokenizer(llama)
    llama.check_model_config(CONFIG)
    moved = llava_next_video_tiny(VOCAB)
    moved = type(moved)(**{**moved.__dict__, "eos_token_id": 5})
    with pytest.raises(InputError, match=r"eos_token_id=5 but </s> is 999"):
        llama.check_model_config(moved)


def test_ids_equal_the_transformers_processor_over_llama_tokenizer_fast(llama):
    backend = tokenizers.Tokenizer.from_str(llama.backend.to_str())
    fast = LlamaTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                              add_bos_token=True)
    processor = LlavaNextVideoProcessor(
        video_processor=LlavaNextVideoImageProcessor(size={"shortest_edge": S}, crop_size={"height": S, "width": S}),
        image_processor=LlavaNextImageProcessor(size={"shortest_edge": S}, crop_size={"height": S, "width": S}),
        tokenizer=fast, chat_template=LLAVA_NEXT_VIDEO_CHAT_TEMPLATE, patch_size=14,
        vision_feature_select_strategy="default")
    text = processor.apply_chat_template(CONVERSATION, add_generation_prompt=True)
    videos = [np.random.default_rng(i).integers(0, 256, (3, S, S, 3), dtype=np.uint8) for i in range(2)]
    expected = processor(text=text, videos=videos, return_tensors="np")["input_ids"][0]
    ours = encode_llava_chat(llama, CONVERSATION, TOKENS, video_frames=[3, 3], add_generation_prompt=True,
                             loss_on="none")
    assert ours.input_ids.tolist() == expected.tolist()
    assert (ours.input_ids == CONFIG.video_token_id).sum() == 2 * 3 * CONFIG.tokens_per_frame


@pytest.mark.parametrize("answer", ["A", "5", "12", "frames 3 to 5", "yes", "B. red circle", "1, 3, 2, 4"])
def test_every_answer_continues_the_generation_prompt_as_training_targets_it(llama, answer):
    question = CONVERSATION[:2]
    prompt = encode_llava_chat(llama, question, TOKENS, video_frames=[2], add_generation_prompt=True,
                               loss_on="none").input_ids
    full = encode_llava_chat(llama, question + [{"role": "assistant", "content": answer}], TOKENS,
                             video_frames=[2], loss_on="last")
    np.testing.assert_array_equal(full.input_ids[:len(prompt)], prompt)
    continuation = encode_llava_answer(llama, answer)
    np.testing.assert_array_equal(full.input_ids[full.loss_mask], np.r_[continuation, TOKENS.eos])
    assert np.flatnonzero(full.loss_mask)[0] == len(prompt)  # nothing between the prompt and the targets
    assert llama.decode(continuation) == answer  # the decoder strips the one leading space


def test_launch_train_runs_llava_from_videos_with_a_llama_tokenizer(tmp_path):
    from sf2t_jax.input.fixture_clips import write_clips
    from sf2t_jax.train.metrics import read_metrics

    clips = write_clips(tmp_path / "clips", 4)
    path = write_tiny_llama_tokenizer(tmp_path / "tokenizer.json", VOCAB)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    workdir = tmp_path / "work"
    cmd = [sys.executable, os.path.join(ROOT, "launch.py"), "train", "--config",
           "configs/sf2t.py:model=llava_next_video_tiny,frames=4,data=videos", "--config.input.max_length=160",
           f"--config.input.tokenizer={path}", f"--config.input.source={os.path.dirname(clips[0])}",
           "--config.input.num_epochs=0", "--config.train.steps=3", "--config.log.every=1",
           "--config.model.dtype=float32", "--config.log.tensorboard=false", "--config.export.final=false",
           "--workdir", str(workdir)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [r["loss"] for r in read_metrics(str(workdir))]
    assert len(losses) == 3 and all(np.isfinite(losses))
    # The same tokenizer for a Qwen2-VL model: one line at start, naming the file.
    qwen = [c.replace("llava_next_video_tiny", "qwen2vl_tiny") for c in cmd]
    qwen[qwen.index("--workdir") + 1] = str(tmp_path / "qwen")
    refused = subprocess.run(qwen, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0
    assert f"{path}: not a Qwen2 vocabulary" in refused.stderr and "Traceback" not in refused.stderr
