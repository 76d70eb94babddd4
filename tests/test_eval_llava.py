"""The FineVidBench scorer on a tiny random LLaVA-NeXT-Video, against transformers 4.49.

Prompts are built by the family's rows (one CLIP frame per slice, pooled frame tokens, the
`USER: ... ASSISTANT:` template, 1D positions), so a benchmark question reads exactly as a
training sample: prompt + option is the training template with that answer. Option NLLs from
the packed, prefix-sharing prefill equal transformers' logits on each prompt alone, greedy
answers equal `generate`, and `evaluate` runs both methods end to end.
"""
import dataclasses

import numpy as np
import pytest
import torch

from sf2t_jax.errors import InputError
from sf2t_jax.eval import evaluate
from sf2t_jax.eval.batching import build_prompt, make_batch
from sf2t_jax.eval.config import EvalSettings
from sf2t_jax.eval.inquiry import Inquiry, option_targets
from sf2t_jax.eval.items import load_items
from sf2t_jax.eval.loading import load_model, load_tokenizer
from sf2t_jax.eval.scorer import ModelScorer
from sf2t_jax.eval.visuals import VisualLoader
from sf2t_jax.finevidbench import load_source, write_benchmark
from sf2t_jax.models.family import row_format
from sf2t_jax.models.layers import Numerics
from sf2t_jax.models.llava_next_video.config import llava_next_video_tiny
from sf2t_jax.text import write_tiny_tokenizer
from sf2t_jax.text.llava_chat import LlavaTokens, encode_llava_chat
from sf2t_jax.world import WorldConfig, write_world
from test_models_llava_next_video import hf_llava_model

CONFIG = llava_next_video_tiny()
SETTINGS = EvalSettings(scene_frames=4, size=(84, 84), batch_size=8, rows=2, max_new_tokens=8,
                        max_new_tokens_open=12, progress_every_s=0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("llava_eval")
    write_world(root / "world", WorldConfig(train_clips=0, validation_clips=0, test_clips=2, height=64, width=64,
                                            num_frames=16, seed=4), progress=False)
    write_benchmark(load_source(root / "world", ("test",)), root / "bench", ("test",))
    ref = hf_llava_model(CONFIG, seed=5)
    ref.save_pretrained(root / "hf")
    write_tiny_tokenizer(root / "hf")
    items = load_items(root / "bench" / "finevidbench_test.jsonl")
    tok = load_tokenizer("", str(root / "hf"))
    model = load_model(str(root / "hf"), numerics=Numerics(precision="highest"))
    scorer = ModelScorer(model, SETTINGS, tok)
    inquiry = Inquiry(items)
    pick = lambda task, **kw: next(it for it in items
                                   if it.task == task and all(getattr(it, k) == v for k, v in kw.items()))
    last = pick("rearrangement")
    turns = {it.task: it for it in items if it.conversation == last.conversation}
    # Action and effect at x2 show the same frames; turns of one conversation share prefixes.
    chosen = [pick("action", speed="x2"), pick("speed", speed="static"), turns["frame_count"],
              turns["adjust_or_not"], last, pick("effect", speed="x2")]
    loader = VisualLoader(root / "world", SETTINGS, rows=scorer.row_format)
    prompts = [build_prompt(it, inquiry, loader, tok, SETTINGS) for it in chosen]
    batch = make_batch(prompts, batch_size=SETTINGS.batch_size, pad_id=scorer.row_format.pad_id(tok),
                       settings=SETTINGS)
    out = scorer.fetch(scorer.dispatch(batch))
    return dict(root=root, ref=ref, tok=tok, items=items, inquiry=inquiry, model=model, loader=loader,
                prompts=list(batch.prompts), batch=batch, out=out)


def _pixels(prompt):
    """The prompt's normalized slices back to the processor's (1, frames, C, s, s) video."""
    n, s, d = prompt.slices.shape
    p = CONFIG.vision.patch_size
    gh, gw = prompt.grid_hw
    return prompt.slices.reshape(n, gh, gw, 3, p, p).transpose(0, 3, 1, 4, 2, 5).reshape(1, n, 3, gh * p, gw * p)


def _hf_inputs(prompt, extra=()):
    ids = np.concatenate([prompt.input_ids, np.asarray(extra, np.int64)]).astype(np.int64)[None]
    return {"input_ids": torch.from_numpy(ids), "pixel_values_videos": torch.from_numpy(_pixels(prompt))}


def test_prompts_are_one_clip_frame_per_slice_in_the_llava_template(setup):
    layout = CONFIG.slice_layout
    for prompt in setup["prompts"]:
        frames = len(prompt.slices)
        assert prompt.slices.shape[1:] == ((layout.fixed_resolution[0] // layout.patch_size) ** 2, layout.patch_dim)
        assert prompt.tokens_per_slice == CONFIG.tokens_per_frame
        assert np.count_nonzero(prompt.input_ids == CONFIG.video_token_id) == frames * CONFIG.tokens_per_frame
        assert prompt.input_ids[0] == CONFIG.bos_token_id
        np.testing.assert_array_equal(prompt.position_ids, np.broadcast_to(np.arange(len(prompt.input_ids)),
                                                                           prompt.position_ids.shape))
    scene = next(p for p in setup["prompts"] if p.item.frames is None)
    assert len(scene.slices) == SETTINGS.scene_frames  # every frame its own slice (Qwen pairs them)


def test_prompt_and_each_option_are_the_training_template_with_that_answer(setup):
    """What training targets after `ASSISTANT:` is what the scorer scores, its </s> included."""
    tok, inquiry, loader = setup["tok"], setup["inquiry"], setup["loader"]
    tokens = LlavaTokens.from_config(CONFIG)
    checked = 0
    for prompt in setup["prompts"]:
        visual = loader.visual(prompt.item)
        for option, text in zip(prompt.options, option_targets(prompt.item, SETTINGS.loglik_target)):
            messages = inquiry.messages(prompt.item, SETTINGS, visual.content) + [
                {"role": "assistant", "content": text}]
            full = encode_llava_chat(tok, messages, tokens, loss_on="last", **visual.vision)
            np.testing.assert_array_equal(full.input_ids[: len(prompt.input_ids)], prompt.input_ids)
            np.testing.assert_array_equal(full.input_ids[full.loss_mask], option)
            assert option[-1] == CONFIG.eos_token_id and np.flatnonzero(full.loss_mask)[0] == len(prompt.input_ids)
            checked += 1
    assert checked >= 15


def test_option_loglik_matches_transformers_logits(setup):
    ref, out = setup["ref"], setup["out"]
    checked = 0
    for r, prompt in enumerate(setup["prompts"]):
        for k, option in enumerate(prompt.options):
            with torch.no_grad():
                logits = ref(**_hf_inputs(prompt, option)).logits[0].double()
            logp = torch.log_softmax(logits, -1).numpy()
            start = len(prompt.input_ids) - 1  # logits at position i predict token i + 1
            expected = -np.mean([logp[start + j, t] for j, t in enumerate(option)])
            assert abs(out["nll"][r, k] - expected) < 1e-4, (prompt.item.item_id, k, out["nll"][r, k], expected)
            checked += 1
        assert np.isinf(out["nll"][r, len(prompt.options):]).all()
    assert checked >= 15
    # Scaled weights: the options' scores differ (a scorer blind to its inputs would tie them).
    assert np.ptp(out["nll"][0, :len(setup["prompts"][0].options)]) > 0.05


def test_greedy_answers_match_transformers_generate(setup):
    out = setup["out"]
    for r, prompt in enumerate(setup["prompts"]):
        budget = SETTINGS.max_new_tokens if prompt.item.options else SETTINGS.max_new_tokens_open
        with torch.no_grad():
            generated = setup["ref"].generate(**_hf_inputs(prompt), max_new_tokens=budget, do_sample=False,
                                              eos_token_id=CONFIG.eos_token_id, pad_token_id=CONFIG.pad_token_id)
        expected = generated[0, len(prompt.input_ids):].numpy()
        np.testing.assert_array_equal(out["tokens"][r][:len(expected)], expected, err_msg=prompt.item.item_id)
        assert (out["tokens"][r][len(expected):] == CONFIG.pad_token_id).all()
    assert len(set(out["tokens"][: len(setup["prompts"])].reshape(-1).tolist())) > 3


def test_evaluate_scores_llava_by_loglik_and_generation(setup):
    settings = dataclasses.replace(SETTINGS, max_videos=1, methods=("loglik", "generate"))
    run = evaluate(setup["model"], setup["items"], settings, tokenizer=setup["tok"],
                   video_root=str(setup["root"] / "world"))
    assert run.meta["items"] > 10 and not run.meta["skipped"]
    assert {r["method"] for r in run.records} == {"loglik", "generate"}
    assert set(run.metrics) == {"loglik", "generate"}


@pytest.mark.parametrize("change, message", [
    (dict(size=(112, 112)), r"^eval video\.size=\(112, 112\): this model takes frames of exactly \(84, 84\)$"),
    (dict(present="images"), r"^eval video\.present='images': .*anyres tiles"),
])
def test_a_presentation_the_family_cannot_take_is_named(setup, change, message):
    with pytest.raises(InputError, match=message):
        VisualLoader(setup["root"] / "world", dataclasses.replace(SETTINGS, **change),
                     rows=row_format(CONFIG))


def test_launch_eval_scores_a_llava_checkpoint(setup, tmp_path):
    """`launch.py eval` on a transformers LLaVA-NeXT-Video checkpoint: the tokenizer is checked
    against the family's own ids, then both methods score the benchmark."""
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "eval"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    proc = subprocess.run(
        [sys.executable, "launch.py", "eval", "--config", "configs/eval_finevidbench.py", "--checkpoint",
         str(setup["root"] / "hf"), "--out", str(out),
         f"--config.benchmark={setup['root'] / 'bench' / 'finevidbench_test.jsonl'}",
         f"--config.videos={setup['root'] / 'world'}", "--config.video.scene_frames=4",
         "--config.video.size=(84, 84)", "--config.max_videos=1", "--config.controls=", "--config.dtype=float32"],
        capture_output=True, text=True, env=env, cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results["metrics"]) == {"loglik", "generate"} and results["meta"]["items"] > 10


def test_the_tokenizer_check_compares_the_llava_placeholders():
    import tokenizers

    from sf2t_jax.text import Tokenizer, build_tiny_tokenizer

    backend = build_tiny_tokenizer(1000)
    backend.add_special_tokens(["<video>"])
    tok = Tokenizer(backend)
    video = backend.token_to_id("<video>")
    assert isinstance(backend, tokenizers.Tokenizer) and video == 1000
    with pytest.raises(InputError, match=rf"video_token_id={CONFIG.video_token_id} but <video> is {video}"):
        tok.check_model_config(CONFIG)
    tok.check_model_config(dataclasses.replace(llava_next_video_tiny(1001), video_token_id=video))
