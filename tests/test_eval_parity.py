"""The scorer against transformers on a tiny random Qwen2-VL: option log-likelihoods from the
shared KV cache equal those from transformers' logits, greedy answers equal generate(), and
a batch split over an 8-device mesh scores the same. The batch packs questions that share
their frames (and, in a conversation, earlier turns) into rows, so the shared prefill is
checked against transformers running each prompt alone."""
import dataclasses

import numpy as np
import pytest
import torch

from configs.sharding import DEFAULT_RULES
from qwen_reference import hf_model
from sf2t_jax.eval.batching import build_prompt, make_batch
from sf2t_jax.eval.config import EvalSettings
from sf2t_jax.eval.inquiry import Inquiry, option_targets
from sf2t_jax.eval.items import load_items
from sf2t_jax.eval.loading import load_model, load_tokenizer
from sf2t_jax.eval.scorer import ModelScorer
from sf2t_jax.eval.visuals import VisualLoader
from sf2t_jax.finevidbench import load_source, write_benchmark
from sf2t_jax.models.config import qwen2vl_tiny
from sf2t_jax.models.layers import Numerics
from sf2t_jax.parallel.mesh import make_mesh
from sf2t_jax.text import encode_chat, write_tiny_tokenizer
from sf2t_jax.world import WorldConfig, write_world
from tolerances import assert_reordered_close

CONFIG = qwen2vl_tiny(tie_word_embeddings=False)
SETTINGS = EvalSettings(scene_frames=4, size=(56, 56), batch_size=8, rows=2, max_new_tokens=8,
                        max_new_tokens_open=12, progress_every_s=0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    write_world(root / "world", WorldConfig(train_clips=0, validation_clips=0, test_clips=2, height=64, width=64,
                                            num_frames=16, seed=3), progress=False)
    write_benchmark(load_source(root / "world", ("test",)), root / "bench", ("test",))
    ref = hf_model(CONFIG, seed=11)
    ref.save_pretrained(root / "hf")
    write_tiny_tokenizer(root / "hf")
    items = load_items(root / "bench" / "finevidbench_test.jsonl")
    tok = load_tokenizer("", str(root / "hf"))
    inquiry = Inquiry(items)
    pick = lambda task, **kw: next(it for it in items
                                   if it.task == task and all(getattr(it, k) == v for k, v in kw.items()))
    last = pick("rearrangement")
    turns = {it.task: it for it in items if it.conversation == last.conversation}
    # Action and effect at x2 show the same frames; three turns of one conversation too (turn
    # 1's prompt is a prefix of the others').
    chosen = [pick("action", speed="x2"), pick("speed", speed="static"), turns["adjust_or_not"], last,
              turns["frame_comparison"], pick("effect", speed="x2"), turns["frame_count"]]
    assert turns["frame_count"].turn == 1 and turns["adjust_or_not"].turn == 3
    images = dataclasses.replace(SETTINGS, present="images", loglik_target="letter_text")
    loader = VisualLoader(root / "world", SETTINGS)
    prompts = [build_prompt(it, inquiry, loader, tok, SETTINGS) for it in chosen[:4]]
    # One question shows its frames as separate images (and scores "B. text"), in the same batch.
    prompts.append(build_prompt(chosen[4], inquiry, VisualLoader(root / "world", images), tok, images))
    prompts += [build_prompt(it, inquiry, loader, tok, SETTINGS) for it in chosen[5:]]
    batch = make_batch(prompts, batch_size=SETTINGS.batch_size, pad_id=tok.special.endoftext, settings=SETTINGS)
    assert sorted(np.unique(batch.token_group[r]).size - 1 for r in range(2)) == [2, 2]  # 4 groups over 2 rows
    # Shared tokens are computed once: action and effect share everything before their question;
    # turns 1 and 3 are prefixes of turn 5; the other two questions stand alone.
    action, effect = prompts[0].input_ids, prompts[5].input_ids
    common = int(np.argmin(action[:len(effect)] == effect[:len(action)]))
    expected = len(action) + len(effect) - common + len(prompts[3].input_ids) + len(prompts[1].input_ids) + len(
        prompts[4].input_ids)
    assert batch.token_counts()["row_tokens"] == expected
    prompts = list(batch.prompts)  # question order of the batch
    return dict(root=root, ref=ref, tok=tok, items=items, inquiry=inquiry, prompts=prompts, batch=batch,
                chosen=chosen, images=images)


def _hf_inputs(prompt, extra=()):
    ids = np.concatenate([prompt.input_ids, np.asarray(extra, np.int64)]).astype(np.int64)[None]
    rows = prompt.slices.reshape(-1, prompt.slices.shape[-1])
    gh, gw = prompt.grid_hw
    if prompt.item.frames is not None and np.count_nonzero(ids == CONFIG.image_token_id):
        grid = np.array([[1, gh, gw]] * len(prompt.slices))
        return dict(input_ids=ids, pixel_values=rows, image_grid_thw=grid)
    return dict(input_ids=ids, pixel_values_videos=rows, video_grid_thw=np.array([[len(prompt.slices), gh, gw]]))


def _torch(d):
    return {k: torch.from_numpy(np.asarray(v)) for k, v in d.items()}


def _ours(setup, **load):
    model = load_model(str(setup["root"] / "hf"), numerics=Numerics(precision="highest"), **load)
    scorer = ModelScorer(model, SETTINGS, setup["tok"], mesh=load.get("mesh"), rules=load.get("rules"))
    return scorer.fetch(scorer.dispatch(setup["batch"]))


@pytest.fixture(scope="module")
def ours(setup):
    return _ours(setup)


def test_option_loglik_matches_transformers_logits(setup, ours):
    ref = setup["ref"]
    checked = 0
    for r, prompt in enumerate(setup["prompts"]):
        for k, option in enumerate(prompt.options):
            with torch.no_grad():
                logits = ref(**_torch(_hf_inputs(prompt, option))).logits[0].double()
            logp = torch.log_softmax(logits, -1).numpy()
            start = len(prompt.input_ids) - 1  # logits at position i predict token i + 1
            expected = -np.mean([logp[start + j, t] for j, t in enumerate(option)])
            assert abs(ours["nll"][r, k] - expected) < 1e-4, (prompt.item.item_id, k, ours["nll"][r, k], expected)
            checked += 1
        assert np.isinf(ours["nll"][r, len(prompt.options):]).all()  # padding options never win
    assert checked == sum(len(p.options) for p in setup["prompts"]) >= 20
    assert np.isinf(ours["nll"][len(setup["prompts"]):]).all()  # padding rows


def test_greedy_answers_match_transformers_generate(setup, ours):
    tok = setup["tok"]
    eos = [tok.special.im_end, tok.special.endoftext]
    for r, prompt in enumerate(setup["prompts"]):
        # Each question decodes to its own budget (multiple choice: max_new_tokens), then pads.
        budget = SETTINGS.max_new_tokens if prompt.item.options else SETTINGS.max_new_tokens_open
        with torch.no_grad():
            out = setup["ref"].generate(**_torch(_hf_inputs(prompt)), max_new_tokens=budget,
                                        do_sample=False, eos_token_id=eos, pad_token_id=tok.special.endoftext)
        expected = out[0, len(prompt.input_ids):].numpy()
        got = ours["tokens"][r]
        np.testing.assert_array_equal(got[:len(expected)], expected, err_msg=prompt.item.item_id)
        assert (got[len(expected):] == tok.special.endoftext).all()
    assert len(set(ours["tokens"][: len(setup["prompts"])].reshape(-1).tolist())) > 3  # not one repeated token


def test_batch_split_over_a_mesh_scores_the_same(setup, ours):
    mesh = make_mesh(data=2, fsdp=1, tensor=4)  # rows over 'data', weights tensor-parallel
    sharded = _ours(setup, mesh=mesh, rules=DEFAULT_RULES)
    # The same sums in another order (tolerances.py): the longest is the vocabulary's logsumexp
    # or attention over the row, through every layer.
    terms = max(CONFIG.text.vocab_size, setup["batch"].input_ids.shape[-1])
    assert_reordered_close(sharded["nll"], ours["nll"], terms, depth=CONFIG.text.num_hidden_layers + CONFIG.vision.depth)
    np.testing.assert_array_equal(sharded["tokens"], ours["tokens"])


def test_option_tokens_are_what_the_chat_template_targets(setup):
    """Scoring appends each option's own tokens; they must equal the tokens encode_chat gives
    the answer turn (BPE never merges across the end of "assistant\\n")."""
    tok, inquiry = setup["tok"], setup["inquiry"]
    for prompt in setup["prompts"]:
        item = prompt.item
        settings = setup["images"] if item == setup["chosen"][4] else SETTINGS
        loader = VisualLoader(setup["root"] / "world", settings)
        visual = loader.visual(item)
        grids = visual.vision
        for option, text in zip(prompt.options, option_targets(item, settings.loglik_target)):
            messages = inquiry.messages(item, settings, visual.content) + [{"role": "assistant", "content": text}]
            full = encode_chat(tok, messages, loss_on="last", add_vision_id=visual.kind == "image", **grids)
            np.testing.assert_array_equal(full.input_ids[: len(prompt.input_ids)], prompt.input_ids)
            np.testing.assert_array_equal(full.input_ids[full.loss_mask], option)


def test_history_shows_earlier_questions_with_gold_answers(setup):
    tok, inquiry, item = setup["tok"], setup["inquiry"], setup["chosen"][2]  # adjust-or-not, turn 3 (gold history)
    prompt = next(p for p in setup["prompts"] if p.item == item)
    text = tok.decode(prompt.input_ids)
    earlier = inquiry.history(item)
    assert [t.turn for t in earlier] == [1, 2]
    for turn in earlier:
        assert f"{turn.question}\nA. {turn.options[0]}" in text
        assert f"<|im_start|>assistant\n{turn.answer}<|im_end|>" in text
    assert text.count("<|video_pad|>") == len(prompt.slices) * 4 and text.count("<|vision_start|>") == 1
    assert len(item.options) == 2 and text.endswith(
        f"{item.question}\nA. {item.options[0]}\nB. {item.options[1]}\n{SETTINGS.instruction}<|im_end|>\n"
        "<|im_start|>assistant\n")
