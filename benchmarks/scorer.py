"""Questions per second of the FineVidBench scorer against transformers, same model, same items.

Usage: python benchmarks/scorer.py [--model tiny|small] [--clips 4] [--batch 8] [--repeats 3] [--size 56]

Writes a synthetic world and its benchmark to a temporary folder, a random tiny Qwen2-VL with
transformers (`save_pretrained`), and builds every prompt once (host work, timed separately).
Then, over the same batches:
  loglik      ours: one prefill per prompt, K options appended to the shared KV cache
              (multiple-choice items only: open items have no options)
  generate    ours: prefill + jitted greedy decode loop, then answer extraction
  hf generate transformers 4.49 `generate(do_sample=False)` on the same left-padded batches,
              then the same extraction (the lmms-eval / VLMEvalKit way)
Steady-state rates are the best of `--repeats` passes after a warm-up pass (compilation for
ours, allocator warm-up for torch); the warm-up time is printed too. It also reports how many
greedy answers agree token for token between the two implementations.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import Qwen2VLConfig as HFConfig
from transformers import Qwen2VLForConditionalGeneration

from sf2t_jax.eval.batching import build_prompt, make_batch, plan_shapes
from sf2t_jax.eval.config import EvalSettings
from sf2t_jax.eval.extract import choice, permutation
from sf2t_jax.eval.inquiry import Inquiry
from sf2t_jax.eval.items import load_items
from sf2t_jax.eval.loading import load_model, load_tokenizer
from sf2t_jax.eval.scorer import ModelScorer
from sf2t_jax.eval.visuals import VisualLoader
from sf2t_jax.finevidbench import load_source, write_benchmark
from sf2t_jax.models.config import TextConfig, VisionConfig, qwen2vl_tiny
from sf2t_jax.text import write_tiny_tokenizer
from sf2t_jax.world import WorldConfig, write_world


def small_config():
    """A model big enough for compute to matter on a CPU: 4 x 512 LLM, 4 x 256 ViT (~20M)."""
    base = qwen2vl_tiny(tie_word_embeddings=False)
    return dataclasses.replace(
        base, vision=VisionConfig(depth=4, embed_dim=256, num_heads=4, mlp_ratio=4, hidden_size=512),
        text=TextConfig(vocab_size=1000, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                        num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6,
                        mrope_section=(8, 12, 12), tie_word_embeddings=False))


MODELS = {"tiny": lambda: qwen2vl_tiny(tie_word_embeddings=False), "small": small_config}


def setup(root: Path, clips: int, model: str):
    write_world(root / "world", WorldConfig(train_clips=0, validation_clips=0, test_clips=clips, height=64,
                                            width=64, num_frames=16, seed=0), progress=False)
    write_benchmark(load_source(root / "world", ("test",)), root / "bench", ("test",))
    torch.manual_seed(0)
    hf_config = HFConfig(**MODELS[model]().to_hf_dict())
    hf_config._attn_implementation = "eager"
    Qwen2VLForConditionalGeneration(hf_config).eval().save_pretrained(root / "hf")
    write_tiny_tokenizer(root / "hf")


def timed(fn, repeats: int) -> tuple[float, float]:
    """(first pass seconds, best of `repeats` later passes)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return first, best


def hf_generate_batch(model, batch, tok) -> np.ndarray:
    """transformers generate on the batch's real rows, left-padded as ours are."""
    prompts = batch.prompts
    n = len(prompts)
    ids = torch.from_numpy(batch.input_ids[:n].astype(np.int64))
    mask = torch.from_numpy(batch.attention_mask[:n].astype(np.int64))
    rows = np.concatenate([p.slices.reshape(-1, p.slices.shape[-1]) for p in prompts])
    grids = np.array([[len(p.slices), *p.grid_hw] for p in prompts])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, pixel_values_videos=torch.from_numpy(rows),
                             video_grid_thw=torch.from_numpy(grids), max_new_tokens=batch.new_tokens,
                             do_sample=False, eos_token_id=[tok.special.im_end, tok.special.endoftext],
                             pad_token_id=tok.special.endoftext)
    return out[:, ids.shape[1]:].numpy()


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=56, help="frame height and width (multiple of 28)")
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        setup(root, args.clips, args.model)
        items = load_items(root / "bench" / "finevidbench_test.jsonl")
        tok = load_tokenizer("", str(root / "hf"))
        settings = EvalSettings(batch_size=args.batch, scene_frames=4, size=(args.size, args.size), progress_every_s=0)
        t0 = time.perf_counter()
        inquiry, visuals = Inquiry(items), VisualLoader(root / "world", settings)
        prompts = [build_prompt(it, inquiry, visuals, tok, settings) for it in items]
        host_s = time.perf_counter() - t0

        def batches(ps):
            shapes = plan_shapes([p.item for p in ps], tok, settings)
            return [make_batch(ps[i:i + args.batch], batch_size=args.batch, pad_id=tok.special.endoftext,
                               settings=settings, shapes=shapes) for i in range(0, len(ps), args.batch)]

        mc = [p for p in prompts if p.item.options]
        mc_batches, all_batches = batches(mc), batches(prompts)
        model = load_model(str(root / "hf"))
        hf = Qwen2VLForConditionalGeneration.from_pretrained(root / "hf", attn_implementation="eager").eval()

        loglik = ModelScorer(model, dataclasses.replace(settings, methods=("loglik",)), tok)
        greedy = ModelScorer(model, dataclasses.replace(settings, methods=("generate",)), tok)
        ours_tokens, hf_tokens = [], []

        def run_loglik():
            for b in mc_batches:
                loglik.fetch(loglik.dispatch(b))

        def run_ours():
            ours_tokens.clear()
            pending = None
            for b in all_batches:  # dispatch ahead, fetch behind: the runner's overlap
                nxt = (b, greedy.dispatch(b))
                if pending:
                    ours_tokens.append(greedy.fetch(pending[1])["tokens"])
                    parse(ours_tokens[-1], pending[0].prompts, tok, settings)
                pending = nxt
            ours_tokens.append(greedy.fetch(pending[1])["tokens"])
            parse(ours_tokens[-1], pending[0].prompts, tok, settings)

        def run_hf():
            hf_tokens.clear()
            for b in all_batches:
                hf_tokens.append(hf_generate_batch(hf, b, tok))
                parse(hf_tokens[-1], b.prompts, tok, settings)

        results = {"loglik (ours)": (len(mc), *timed(run_loglik, args.repeats)),
                   "generate (ours)": (len(prompts), *timed(run_ours, args.repeats)),
                   "generate (transformers)": (len(prompts), *timed(run_hf, args.repeats))}
        same = sum(np.array_equal(o[r, :h.shape[1]], h[r]) and (o[r, h.shape[1]:] == tok.special.endoftext).all()
                   for o, h in zip(ours_tokens, hf_tokens) for r in range(h.shape[0]))

    print(f"model {args.model}: {len(items)} items ({len(mc)} multiple choice) from {args.clips} clips, "
          f"batch {args.batch}, "
          f"frames {args.size}x{args.size}; prompts built once on the host in {host_s:.2f}s "
          f"({len(items) / host_s:.0f}/s)")
    print(f"{'':26s}{'questions':>10s}{'first pass s':>14s}{'steady s':>10s}{'questions/s':>13s}")
    for name, (n, first, best) in results.items():
        print(f"{name:26s}{n:>10d}{first:>14.2f}{best:>10.2f}{n / best:>13.1f}")
    print(f"greedy answers equal token for token (ours vs transformers): {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
