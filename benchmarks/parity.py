"""Measured logit parity of the three model families with transformers 4.49 (the README's figures).

    PYTHONPATH=. python benchmarks/parity.py

Runs the full-logits cases of the parity tests (tests/test_models_parity.py,
tests/test_models_qwen25.py, tests/test_models_llava_next_video.py) with their own models,
weight scales and inputs, and prints, per family and case, the span of transformers' logits and
our largest absolute difference from them (padding excluded). The tests assert < 1e-4; this
prints what the difference is. float32, `precision='highest'`, CPU; about a minute.
"""
from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))  # the tests' reference models and inputs

import test_models_llava_next_video as llava_tests  # noqa: E402
import test_models_parity as qwen2_tests  # noqa: E402
import test_models_qwen25 as qwen25_tests  # noqa: E402
from qwen_reference import hf_logits  # noqa: E402
from sf2t_jax.convert import from_hf  # noqa: E402


def _ours(ref, numerics):
    with tempfile.TemporaryDirectory() as path:
        ref.save_pretrained(path)
        return from_hf(path, numerics=numerics)


def _row(family, case, expected, got, inputs):
    valid = inputs.get("attention_mask", np.ones(np.asarray(inputs["input_ids"]).shape)).astype(bool)
    err = np.abs(np.asarray(got) - expected)[valid].max()
    print(f"| {family} | {case} | {np.ptp(expected[valid]):.1f} | {err:.1e} |", flush=True)


def qwen2_vl():
    for name in sorted(qwen2_tests.CONFIGS):
        config = qwen2_tests.CONFIGS[name]
        ref = qwen2_tests.hf_model(config, seed=len(name))  # the test fixture's seed
        ours = _ours(ref, qwen2_tests.HIGHEST)
        for case in qwen2_tests.CASE_NAMES:
            inputs = qwen2_tests._cases(config)[case]
            _row(f"Qwen2-VL ({name})", case, hf_logits(ref, **inputs), ours.hf_logits(**inputs), inputs)


def qwen2_5_vl():
    t = qwen25_tests
    ref = t.hf_qwen25_model(t.CONFIG, seed=1)
    ours = _ours(ref, t.HIGHEST)
    for case, inputs in t._cases().items():
        position_ids, _ = t._reference_rope_index(t.CONFIG, inputs)
        with torch.no_grad():
            expected = ref(**t._torch(inputs), position_ids=torch.from_numpy(position_ids)).logits.numpy()
        _row("Qwen2.5-VL", case, expected, ours.hf_logits(**inputs), inputs)


def llava_next_video():
    t = llava_tests
    ref = t.hf_llava_model(t.CONFIG, seed=1)
    ours = _ours(ref, t.HIGHEST)
    for case, inputs in t._cases().items():
        _row("LLaVA-NeXT-Video", case, t._reference_logits(ref, inputs), ours.hf_logits(**inputs), inputs)


if __name__ == "__main__":
    print("| family (tiny model) | case | logit span | max abs logit diff |\n|---|---|---|---|")
    qwen2_vl()
    qwen2_5_vl()
    llava_next_video()
