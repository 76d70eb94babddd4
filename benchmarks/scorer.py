"""Questions per second of the FineVidBench scorer against transformers, same model, same items.

Usage: python benchmarks/scorer.py [--model tiny|small|bench] [--clips 4] [--batch 8] [--rows 0]
                                   [--repeats 3] [--size 56] [--no-share] [--dtype bfloat16] [--profile]

Writes a synthetic world and its benchmark to a temporary folder, a random Qwen2-VL with
transformers (`save_pretrained`), and builds every prompt once (host work, timed separately).
Then, over the same questions:
  loglik      ours: batches planned as `eval.runner` plans them (questions about the same frames
              share a packed row: the video and earlier turns are computed once), K options
              appended to each question's view of the cache (multiple-choice items only)
  generate    ours: the same prefill + jitted greedy decode loop, then answer extraction
  hf generate transformers 4.49 `generate(do_sample=False)` the lmms-eval way: prompts grouped
              by generation budget (multiple choice / open), sorted by length (longest first),
              batches of --batch, left-padded to the batch's longest prompt, then the same
              extraction
Steady-state rates are the best of `--repeats` passes after a warm-up pass (compilation for
ours, allocator warm-up for torch), passes of ours and transformers alternating; the warm-up
time is printed too. It also reports how many greedy answers agree token for token between the
two implementations. --profile times each jitted stage of ours separately (synchronously).

Models: tiny (qwen2vl_tiny, 0.3M), small (LLM 4 x 512, ViT 4 x 256, vocab 1000, ~17M) and bench
(LLM 8 x 512, ViT 4 x 256, the real 151,936-token vocabulary, tied: ~100M parameters, the
issue's realistic setting; run it with --size 112).
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import tempfile
import time
from functools import partial
from pathlib import Path

import jax
import numpy as np
import torch
from flax import nnx
from transformers import Qwen2VLConfig as HFConfig
from transformers import Qwen2VLForConditionalGeneration

from sf2t_jax.eval.batching import build_prompt, make_batch, plan_batches, plan_shapes
from sf2t_jax.eval.config import EvalSettings
from sf2t_jax.eval.extract import choice, permutation
from sf2t_jax.eval.inquiry import Inquiry
from sf2t_jax.eval.items import load_items
from sf2t_jax.eval.loading import load_model, load_tokenizer
from sf2t_jax.eval.loglik import prefill_shared
from sf2t_jax.eval.scorer import ModelScorer
from sf2t_jax.eval.visuals import VisualLoader
from sf2t_jax.finevidbench import load_source, write_benchmark
from sf2t_jax.models.config import TextConfig, VisionConfig, qwen2vl_tiny
from sf2t_jax.models.generate import decode
from sf2t_jax.models.rows import QWEN2_VL_ROWS
from sf2t_jax.text import write_tiny_tokenizer
from sf2t_jax.world import WorldConfig, write_world


def small_config():
    """A model big enough for compute to matter on a CPU: 4 x 512 LLM, 4 x 256 ViT (~17M)."""
    base = qwen2vl_tiny(tie_word_embeddings=False)
    return dataclasses.replace(
        base, vision=VisionConfig(depth=4, embed_dim=256, num_heads=4, mlp_ratio=4, hidden_size=512),
        text=TextConfig(vocab_size=1000, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                        num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6,
                        mrope_section=(8, 12, 12), tie_word_embeddings=False))


def bench_config():
    """A researcher's realistic small model (~100M): 8 x 512 LLM with Qwen2's real 151,936-token
    vocabulary (tied embeddings), 4 x 256 ViT. The tiny tokenizer's special ids (top of its
    1000 ids) stay; the rest of the vocabulary is never produced by the tokenizer but is
    scored, like the padded tail of the real Qwen2-VL vocabulary."""
    base = qwen2vl_tiny(vocab_size=1000, tie_word_embeddings=True)
    return dataclasses.replace(
        base, vision=VisionConfig(depth=4, embed_dim=256, num_heads=4, mlp_ratio=4, hidden_size=512),
        text=TextConfig(vocab_size=151936, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                        num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6,
                        mrope_section=(8, 12, 12), tie_word_embeddings=True))


MODELS = {"tiny": lambda: qwen2vl_tiny(tie_word_embeddings=False), "small": small_config, "bench": bench_config}


def setup(root: Path, clips: int, model: str):
    write_world(root / "world", WorldConfig(train_clips=0, validation_clips=0, test_clips=clips, height=64,
                                            width=64, num_frames=16, seed=0), progress=False)
    write_benchmark(load_source(root / "world", ("test",)), root / "bench", ("test",))
    torch.manual_seed(0)
    hf_config = HFConfig(**MODELS[model]().to_hf_dict())
    hf_config._attn_implementation = "eager"
    Qwen2VLForConditionalGeneration(hf_config).eval().save_pretrained(root / "hf")
    write_tiny_tokenizer(root / "hf")


def budget(prompt, settings: EvalSettings) -> int:
    return settings.max_new_tokens if prompt.item.options else settings.max_new_tokens_open


def hf_batches(prompts, size: int, settings: EvalSettings) -> list[tuple[int, list]]:
    """lmms-eval's Collator: requests grouped by generation arguments (here the token budget),
    longest prompts first, consecutive batches of `size`."""
    out = []
    for new_tokens in sorted({budget(p, settings) for p in prompts}):
        ordered = sorted((p for p in prompts if budget(p, settings) == new_tokens), key=lambda p: -len(p.input_ids))
        out += [(new_tokens, ordered[i:i + size]) for i in range(0, len(ordered), size)]
    return out


def hf_generate_batch(model, prompts, tok, new_tokens: int) -> np.ndarray:
    """transformers generate on a batch left-padded to its longest prompt (processor padding)."""
    length = max(len(p.input_ids) for p in prompts)
    ids = np.full((len(prompts), length), tok.special.endoftext, np.int64)
    mask = np.zeros((len(prompts), length), np.int64)
    for r, p in enumerate(prompts):
        ids[r, length - len(p.input_ids):] = p.input_ids
        mask[r, length - len(p.input_ids):] = 1
    rows = np.concatenate([p.slices.reshape(-1, p.slices.shape[-1]) for p in prompts])
    grids = np.array([[len(p.slices), *p.grid_hw] for p in prompts])
    with torch.no_grad():
        out = model.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                             pixel_values_videos=torch.from_numpy(rows), video_grid_thw=torch.from_numpy(grids),
                             max_new_tokens=new_tokens, do_sample=False,
                             eos_token_id=[tok.special.im_end, tok.special.endoftext],
                             pad_token_id=tok.special.endoftext)
    return out[:, length:].numpy()


def parse(tokens: np.ndarray, prompts, tok, settings: EvalSettings) -> int:
    """Decodes and extracts every answer; returns how many parsed (the work is the point)."""
    stops = {tok.special.im_end, tok.special.endoftext}
    parsed = 0
    for row, p in zip(tokens, prompts):
        row = [int(t) for t in row[: settings.max_new_tokens if p.item.options else settings.max_new_tokens_open]]
        end = next((i for i, t in enumerate(row) if t in stops), len(row))
        text = tok.decode(row[:end], skip_special_tokens=True)
        got = choice(text, p.item.options) if p.item.options else permutation(text, len(p.item.order))
        parsed += got.parsed
    return parsed


def our_batches(prompts, tok, settings: EvalSettings) -> list:
    """The runner's plan (`plan_batches`) over these prompts' items."""
    by_item = {p.item.item_id: p for p in prompts}
    items = [p.item for p in prompts]
    plan = plan_batches(items, settings)
    shapes = plan_shapes(items, tok, settings, QWEN2_VL_ROWS, plan)
    return [make_batch([by_item[it.item_id] for it in b], batch_size=settings.batch_size,
                       pad_id=tok.special.endoftext, settings=settings, shapes=shapes) for b in plan]


def profile(model, mc_batches, all_batches, tok, repeats: int) -> dict:
    """Seconds per jitted stage (each synchronised; best of `repeats` passes): the loglik
    prefill over `mc_batches`, the greedy prefill and decode over `all_batches`, and the vision
    tower alone (it also runs inside both prefills)."""
    graphdef, state = nnx.split(model)
    eos = np.asarray([tok.special.im_end, tok.special.endoftext], np.int32)
    pad = np.int32(tok.special.endoftext)

    @partial(jax.jit, static_argnums=0)
    def vision(graphdef, state, v):
        return nnx.merge(graphdef, state).encode_vision(v)

    def prefill(x, new_tokens):
        args = {k: v for k, v in x.items() if k not in ("rope_deltas", "decode_budget")}
        return jax.block_until_ready(prefill_shared(graphdef, state, **args, max_new_tokens=new_tokens))

    def one_pass():
        t = collections.Counter()
        for b in mc_batches:
            x = jax.device_put(b.device_arrays())
            t0 = time.perf_counter()
            prefill(x, None)
            t["loglik prefill (vision, prompts, options)"] += time.perf_counter() - t0
        for b in all_batches:
            x = jax.device_put(b.device_arrays())
            t0 = time.perf_counter()
            jax.block_until_ready(vision(graphdef, state, x["vision"]))
            t1 = time.perf_counter()
            logits, _, _, cache = prefill(x, b.new_tokens)
            t2 = time.perf_counter()
            jax.block_until_ready(decode(graphdef, state, logits, cache, x["rope_deltas"], eos, pad,
                                         x["decode_budget"], max_new_tokens=b.new_tokens))
            t["greedy prefill (vision, prompts)"] += t2 - t1
            t["decode"] += time.perf_counter() - t2
            t["vision alone"] += t1 - t0
        return t

    one_pass()
    return min((one_pass() for _ in range(repeats)), key=lambda t: sum(t.values()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8, help="questions per batch (both implementations)")
    parser.add_argument("--rows", type=int, default=0, help="packed rows per batch (ours; 0: one per 4 questions)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=56, help="frame height and width (multiple of 28)")
    parser.add_argument("--no-share", action="store_true", help="ours without shared prefixes")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="ours")
    parser.add_argument("--profile", action="store_true", help="time each jitted stage of ours")
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        setup(root, args.clips, args.model)
        items = load_items(root / "bench" / "finevidbench_test.jsonl")
        tok = load_tokenizer("", str(root / "hf"))
        settings = EvalSettings(batch_size=args.batch, rows=args.rows, share_prefix=not args.no_share,
                                scene_frames=4, size=(args.size, args.size), progress_every_s=0)
        t0 = time.perf_counter()
        inquiry, visuals = Inquiry(items), VisualLoader(root / "world", settings)
        prompts = [build_prompt(it, inquiry, visuals, tok, settings) for it in items]
        host_s = time.perf_counter() - t0

        mc = [p for p in prompts if p.item.options]
        t0 = time.perf_counter()
        loglik_settings = dataclasses.replace(settings, methods=("loglik",))
        greedy_settings = dataclasses.replace(settings, methods=("generate",))
        mc_batches, all_batches = our_batches(mc, tok, loglik_settings), our_batches(prompts, tok, greedy_settings)
        plan_s = time.perf_counter() - t0
        model = load_model(str(root / "hf"), dtype=args.dtype)
        hf = Qwen2VLForConditionalGeneration.from_pretrained(root / "hf", attn_implementation="eager").eval()

        loglik = ModelScorer(model, loglik_settings, tok)
        greedy = ModelScorer(model, greedy_settings, tok)
        ours_tokens, hf_tokens = {}, {}

        def run_loglik():
            pending = None
            for b in mc_batches:
                nxt = loglik.dispatch(b)
                if pending is not None:
                    loglik.fetch(pending)
                pending = nxt
            loglik.fetch(pending)

        def run_ours():
            pending = None
            for b in all_batches + [None]:  # dispatch ahead, fetch behind: the runner's overlap
                nxt = (b, greedy.dispatch(b)) if b is not None else None
                if pending:
                    tokens = greedy.fetch(pending[1])["tokens"]
                    parse(tokens, pending[0].prompts, tok, settings)
                    ours_tokens.update({p.item.item_id: tokens[r] for r, p in enumerate(pending[0].prompts)})
                pending = nxt

        def run_hf():
            for new_tokens, b in hf_batches(prompts, args.batch, settings):
                tokens = hf_generate_batch(hf, b, tok, new_tokens)
                parse(tokens, b, tok, settings)
                hf_tokens.update({p.item.item_id: tokens[r] for r, p in enumerate(b)})

        runs = {"loglik (ours)": (len(mc), run_loglik), "generate (ours)": (len(prompts), run_ours),
                "generate (transformers)": (len(prompts), run_hf)}
        first, best = {}, {name: float("inf") for name in runs}
        for name, (_, fn) in runs.items():  # warm-up (compiles)
            t = time.perf_counter()
            fn()
            first[name] = time.perf_counter() - t
        for _ in range(args.repeats):  # alternate, so a busy machine slows every side alike
            for name, (_, fn) in runs.items():
                t = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t)
        budgets = {p.item.item_id: budget(p, settings) for p in prompts}  # the tokens graded
        same = sum(np.array_equal(ours_tokens[k][:len(h)], h)
                   and (ours_tokens[k][len(h):budgets[k]] == tok.special.endoftext).all()
                   for k, h in hf_tokens.items())
        stages = profile(model, mc_batches, all_batches, tok, args.repeats) if args.profile else None

    n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model)))
    print(f"model {args.model} ({n_params / 1e6:.1f}M parameters, ours {args.dtype}): {len(items)} items "
          f"({len(mc)} multiple choice) from {args.clips} clips, batch {args.batch}, rows {args.rows}, "
          f"{'shared prefixes' if settings.share_prefix else 'no sharing'}, frames {args.size}x{args.size}; "
          f"prompts built once on the host in {host_s:.2f}s ({len(items) / host_s:.0f}/s), planned and "
          f"batched in {plan_s:.2f}s")
    count = lambda batches, k: sum(b.token_counts()[k] for b in batches)
    hf_padded = sum(len(b) * max(len(p.input_ids) for p in b) for _, b in hf_batches(prompts, args.batch, settings))
    print(f"prompt tokens {count(all_batches, 'prompt_tokens')}: transformers runs {hf_padded} with padding; ours "
          f"{count(all_batches, 'row_tokens')} (each shared prefix once), {count(all_batches, 'padded_row_tokens')} with "
          f"padding in {len(all_batches)} batches (greedy), {count(mc_batches, 'padded_row_tokens')} with the options "
          f"in {len(mc_batches)} batches (loglik)")
    print(f"{'':26s}{'questions':>10s}{'first pass s':>14s}{'steady s':>10s}{'questions/s':>13s}{'vs hf':>8s}")
    hf_rate = len(prompts) / best["generate (transformers)"]
    for name, (n, _) in runs.items():
        print(f"{name:26s}{n:>10d}{first[name]:>14.2f}{best[name]:>10.2f}{n / best[name]:>13.1f}"
              f"{n / best[name] / hf_rate:>7.1f}x")
    print(f"greedy answers equal token for token within their budget (ours vs transformers): {same}/{len(prompts)}")
    if stages:
        print("ours by stage (synchronous, best pass): " + ", ".join(f"{k} {v:.2f}s" for k, v in stages.items()))


if __name__ == "__main__":
    main()
