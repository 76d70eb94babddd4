"""Greedy decoding with the KV cache equals transformers' generate(do_sample=False)."""
import numpy as np
import torch

from qwen_reference import hf_model, patches, video_tokens
from sf2t_jax.convert import from_hf
from sf2t_jax.models.config import qwen2vl_tiny
from sf2t_jax.models.generate import greedy_generate
from sf2t_jax.models.layers import Numerics
from sf2t_jax.models.qwen2_vl import prepare_hf_inputs

CONFIG = qwen2vl_tiny(tie_word_embeddings=False)
PAD = 0


def _batch():
    """Two video prompts of different lengths and grids, left-padded (as for generation)."""
    grid_a, grid_b = (4, 4, 4), (2, 4, 6)
    rows = [[11, 12, 13] + video_tokens(CONFIG, grid_a) + [14, 15],
            [21] + video_tokens(CONFIG, grid_b) + [22, 23, 24, 25, 26, 27]]
    length = max(map(len, rows))
    ids = np.array([[PAD] * (length - len(r)) + r for r in rows])
    mask = np.array([[0] * (length - len(r)) + [1] * len(r) for r in rows])
    return dict(input_ids=ids, attention_mask=mask, pixel_values_videos=patches(CONFIG, [grid_a, grid_b], 7),
                video_grid_thw=np.array([grid_a, grid_b]))


def test_greedy_generation_matches_transformers(tmp_path):
    ref = hf_model(CONFIG, seed=5)
    ref.save_pretrained(tmp_path)
    ours = from_hf(tmp_path, numerics=Numerics(precision="highest"))
    inputs = _batch()
    with torch.no_grad():
        expected = ref.generate(**{k: torch.from_numpy(v) for k, v in inputs.items()}, max_new_tokens=8,
                                do_sample=False, eos_token_id=CONFIG.eos_token_id, pad_token_id=PAD)
    expected = expected[:, inputs["input_ids"].shape[1]:].numpy()
    got = greedy_generate(ours, prepare_hf_inputs(CONFIG, **inputs), max_new_tokens=8,
                          eos_token_ids=[CONFIG.eos_token_id], pad_token_id=PAD)
    assert expected.shape == (2, 8)
    np.testing.assert_array_equal(got[:, : expected.shape[1]], expected)
    # The prompts must not collapse onto one repeated token, or the check above proves little.
    assert len(set(got.reshape(-1).tolist())) > 2


def test_generation_stops_at_eos_and_pads(tmp_path):
    ref = hf_model(CONFIG, seed=6)
    ref.save_pretrained(tmp_path)
    ours = from_hf(tmp_path, numerics=Numerics(precision="highest"))
    inputs = prepare_hf_inputs(CONFIG, **_batch())
    free = greedy_generate(ours, inputs, max_new_tokens=6, eos_token_ids=[CONFIG.eos_token_id], pad_token_id=PAD)
    stop_token = int(free[0, 2])  # pretend the third token of row 0 ends the answer
    stopped = greedy_generate(ours, inputs, max_new_tokens=6, eos_token_ids=[stop_token], pad_token_id=PAD)
    first = int(np.argmax(free[0] == stop_token))
    np.testing.assert_array_equal(stopped[0, : first + 1], free[0, : first + 1])
    assert (stopped[0, first + 1:] == PAD).all()
