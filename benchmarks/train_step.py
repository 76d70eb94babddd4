"""Train-step throughput: our jitted SF²T LoRA step against transformers + peft (PyTorch), same batch.

Usage: python benchmarks/train_step.py [--batch 4] [--rounds 5] [--steps 1] [--dtype bf16|fp32|both]
                                       [--loss-positions 16] [--torch-variants labels,gather]

The model is a Qwen2-VL-architecture config of 105 M parameters (`bench_config`): the LLM is
8 layers of width 512 (SwiGLU 1408, 8 heads, 2 KV heads) over the real Qwen2 vocabulary
(151,936 tokens, embeddings TIED to the LM head, as in Qwen2-VL-2B); the ViT is 4 blocks of
width 256 with the 2x2 merger to 512. A sample is 16 frames of 112x112: 8 temporal slices of
8x8 patches (512 patches, 128 merged tokens) in a 512-token chat (system, the video, a long
question, an 8-token answer and the end token); row b ends b % 8 tokens early (padding).
Batch 4 by default: 2,048 tokens per step.

The same batch and the same recipe on both sides: LoRA rank 16, alpha 32 on the LLM's
q/k/v/o/gate/up/down (base frozen), the ViT frozen, the merger trained; AdamW (lr 1e-4,
global-norm clip 1.0), next-token cross-entropy on the answer tokens only (sum / count).
  ours          `sf2t_jax.train` as the trainer runs it: the trainer's build functions
                (`train/setup.py`: model split trainable / frozen, optimizer, shardings, the
                jitted step with its state donated), `state.create`, with
                `train.loss_positions=16`: the LM head only at each row's answer positions.
  torch/labels  stock transformers 4.49 `Qwen2VLForConditionalGeneration` (sdpa attention) +
                peft `get_peft_model`, loss from `labels=` (logits at every position),
                `torch.optim.AdamW`, `clip_grad_norm_`.
  torch/gather  the same, with our loss trick ported: the model's forward up to the hidden
                states, then the LM head at the answer positions only.
Our initial weights and LoRA A matrices are copied into torch, so the first losses agree
(printed). dtype policies, the same on both sides: bf16 = bfloat16 compute, float32 master
weights of the trained parameters, the frozen base stored in bfloat16 (torch:
`torch.autocast('cpu', bfloat16)`, frozen weights cast to bfloat16); fp32 = float32 throughout.

Threads: XLA's CPU client uses every core; torch gets `torch.set_num_threads(os.cpu_count())`.
The sides run ALTERNATELY (`--rounds` rounds of `--steps` steps each, the matmul peak measured
at the start of each round) so that load from other processes hits all of them alike; step
times are the median and best over rounds. The process runs with glibc malloc tunables
(`MALLOC_TUNABLES` below; `SF2T_BENCH_MALLOC=default` to turn off) that keep large freed blocks
for reuse: without them every step of either side page-faults its temporaries in afresh.
FLOPs are analytic (`sf2t_jax.plan.flops.train_step_flops`), printed by part; the LM head is
counted at the positions each side computes (every position for torch/labels, the answer
positions otherwise). MFU = achieved FLOP/s / the median measured matmul peak of the dtype
(`sf2t_jax.plan.peak.measure_matmul_peak`, 2048^3). Our step must compile exactly once: XLA
compilations while it runs and its jit cache are checked after every round (growth is an error).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from sf2t_jax.models import rope
from sf2t_jax.models.config import Qwen2VLConfig, TextConfig, VisionConfig
from sf2t_jax.plan.flops import Workload, train_step_flops
from sf2t_jax.plan.peak import measure_matmul_peak

LORA_RANK, LORA_ALPHA = 16, 32.0
ANSWER_TOKENS = 8
SYSTEM_TOKENS = 5


def bench_config() -> Qwen2VLConfig:
    """~105 M parameters: 8 x 512 LLM over the real 151,936-token vocabulary (tied), 4 x 256 ViT."""
    return Qwen2VLConfig(
        vision=VisionConfig(depth=4, embed_dim=256, num_heads=4, mlp_ratio=4, hidden_size=512),
        text=TextConfig(vocab_size=151936, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                        num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6,
                        mrope_section=(8, 12, 12), tie_word_embeddings=True))


# ----------------------------------------------------------------------------------------
# The batch (the trainer's batch contract, sf2t_jax/train/data.py)
# ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Shape:
    batch: int
    frames: int
    size: int
    length: int

    def slices(self, cfg: Qwen2VLConfig) -> int:
        return math.ceil(self.frames / cfg.vision.temporal_patch_size)

    def grid(self, cfg: Qwen2VLConfig) -> int:
        return self.size // cfg.vision.patch_size

    def workload(self, cfg: Qwen2VLConfig) -> Workload:
        return Workload(batch=self.batch, seq_len=self.length, slices=self.slices(cfg),
                        patches_per_slice=self.grid(cfg) ** 2)


def make_batch(cfg: Qwen2VLConfig, shape: Shape, seed: int = 0) -> dict[str, np.ndarray]:
    """Rows of the batch contract: system tokens, one video, a question that fills the row,
    an ANSWER_TOKENS-token answer and the end token (the loss targets); row b ends b % 8
    tokens early (padding)."""
    rng = np.random.default_rng(seed)
    t, g = shape.slices(cfg), shape.grid(cfg)
    merged = t * g * g // cfg.vision.spatial_merge_size**2
    b, length = shape.batch, shape.length
    input_ids = np.full((b, length), cfg.bos_token_id, np.int32)
    attention_mask = np.zeros((b, length), np.int32)
    loss_mask = np.zeros((b, length), np.int32)
    vision_index = np.full((b, merged), length, np.int32)
    for r in range(b):
        n = length - r % 8
        question = n - (SYSTEM_TOKENS + merged + 2 + ANSWER_TOKENS + 1)
        if question < 4:
            raise ValueError(f"length {length} cannot hold {merged} vision tokens and the text")
        ids = list(rng.integers(8, 32000, SYSTEM_TOKENS)) + [cfg.vision_start_token_id] + [cfg.video_token_id] * merged
        ids += [cfg.vision_end_token_id] + list(rng.integers(8, 32000, question))
        ids += list(rng.integers(8, 32000, ANSWER_TOKENS)) + [cfg.eos_token_id]
        input_ids[r, :n] = ids
        attention_mask[r, :n] = 1
        loss_mask[r, n - ANSWER_TOKENS - 1:n] = 1
        vision_index[r] = np.nonzero(input_ids[r] == cfg.video_token_id)[0]
    grid_thw = np.array([[t, g, g]] * b, np.int64)
    position_ids, _ = rope.get_rope_index(
        input_ids, None, grid_thw, attention_mask, image_token_id=cfg.image_token_id,
        video_token_id=cfg.video_token_id, vision_start_token_id=cfg.vision_start_token_id,
        spatial_merge_size=cfg.vision.spatial_merge_size)
    patches = rng.standard_normal((b, t, g * g, cfg.vision.patch_dim), dtype=np.float32)
    return dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids.astype(np.int32),
                loss_mask=loss_mask, vision_patches=patches, vision_index=vision_index,
                task_id=np.zeros((b,), np.int32), valid=np.ones((b,), np.int32))


# ----------------------------------------------------------------------------------------
# Ours
# ----------------------------------------------------------------------------------------
def train_config(dtype: str, overrides=()):
    """The trainer's experiment (configs/sf2t.py: the recipe) with the dtype policy."""
    from sf2t_jax.configuration import load_config
    from sf2t_jax.experiment import from_config

    bf16 = dtype == "bf16"
    return from_config(load_config("configs/sf2t.py", [
        f"model.dtype={'bfloat16' if bf16 else 'float32'}", "model.param_dtype=float32",
        f"model.frozen_dtype={'bfloat16' if bf16 else 'float32'}", f"lora.rank={LORA_RANK}",
        f"lora.alpha={LORA_ALPHA}", "train.steps=1000", "train.warmup_fraction=0.0", *overrides]))


class Ours:
    """The project's train step on one device, the state initialised from `seed`."""

    def __init__(self, cfg: Qwen2VLConfig, shape: Shape, host: dict, dtype: str, loss_positions: int = 0,
                 overrides=()):
        from sf2t_jax.train import data as data_lib
        from sf2t_jax.train import model as model_lib
        from sf2t_jax.train import setup as setup_lib
        from sf2t_jax.train import state as state_lib

        config = self.config = train_config(dtype, (*overrides, f"train.loss_positions={loss_positions}",
                                                    "mesh.devices=1"))
        model = setup_lib.build_model(config, jax.devices(), shape=cfg)
        self.parts = model.parts
        values = model_lib.initial_values(model.parts, config, model.mesh, model.rules)
        self.values = values
        self.trainable_count = model_lib.count(values["trainable"])
        self.frozen_count = model_lib.count(values["frozen"])
        geometry = data_lib.BatchGeometry(batch_size=shape.batch, length=shape.length, slices=shape.slices(cfg),
                                          grid_hw=(shape.grid(cfg),) * 2, steps_per_epoch=1, num_tasks=1,
                                          task_names=("bench",))
        built = setup_lib.build_step(config, model, geometry, int(config.train.steps))
        tx, shardings = built.tx, built.state_shardings
        self.batch = {k: jax.device_put(v, built.batch_shardings[k]) for k, v in host.items()}
        self.step = built.step
        # The state is donated to the step: keep host copies of the initial values for torch.
        self.initial = jax.device_get({"trainable": values["trainable"], "frozen": values["frozen"]})
        self.state = state_lib.create(values["trainable"], values["frozen"], tx, 0, shardings)
        self.extra = values["extra"]
        self.compiles, self._running = 0, False  # XLA compilations while our step runs
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event, seconds, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration" and self._running:
            self.compiles += 1

    def close(self) -> None:
        jax.monitoring.unregister_event_duration_listener(self._on_event)

    def run(self) -> float:
        self._running = True
        try:
            self.state, metrics = self.step(self.state, self.extra, self.batch)
            return float(metrics["loss"])  # waits for the step
        finally:
            self._running = False

    def cache_size(self) -> int:
        return self.step.jitted._cache_size()

    def hf_tensors(self):
        """(Hub key, numpy) of the initial base weights, and {our LoRA path: A} for torch."""
        from flax import traverse_util

        from sf2t_jax.convert.hf import hf_tensors
        from sf2t_jax.models import lora

        model = self.parts.merge(self.initial["trainable"], self.initial["frozen"], jax.device_get(self.extra))
        adapters = {".".join(map(str, k[:-1])): np.asarray(v, np.float32) for k, v in
                    traverse_util.flatten_dict(self.initial["trainable"]).items() if k[-1] == "lora_a"}
        lora.merge_lora(model)  # B = 0: the base weights as they are
        return {k: np.asarray(v, np.float32) for k, v in hf_tensors(model)}, adapters


# ----------------------------------------------------------------------------------------
# transformers + peft
# ----------------------------------------------------------------------------------------
class Torch:
    """Qwen2VLForConditionalGeneration + peft LoRA, the same weights, batch and recipe."""

    def __init__(self, cfg: Qwen2VLConfig, shape: Shape, host: dict, dtype: str, weights, adapters,
                 variant: str, compile_model: bool = False):
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import Qwen2VLConfig as HFConfig
        from transformers import Qwen2VLForConditionalGeneration

        self.torch, self.variant, self.cfg = torch, variant, cfg
        self.bf16 = dtype == "bf16"
        torch.manual_seed(0)
        hf_config = HFConfig(**cfg.to_hf_dict())
        hf_config._attn_implementation = "sdpa"
        model = Qwen2VLForConditionalGeneration(hf_config)
        missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
        if unexpected or set(missing) - {"lm_head.weight"}:
            raise RuntimeError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
        model.tie_weights()
        targets = r"model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)"
        model = get_peft_model(model, LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, lora_dropout=0.0,
                                                 target_modules=targets, bias="none"))
        named = dict(model.named_parameters())
        with torch.no_grad():
            for path, a in adapters.items():  # ours (in, r) -> peft (r, in)
                named[f"base_model.model.{path}.lora_A.default.weight"].copy_(torch.from_numpy(a.T))
        for name, p in model.named_parameters():
            if ".visual.merger." in name:
                p.requires_grad_(True)  # the recipe trains the merger fully
        inner = model.base_model.model
        if self.bf16:  # frozen base in bfloat16, trained parameters stay float32 (master weights)
            for p in model.parameters():
                if not p.requires_grad:
                    p.data = p.data.to(torch.bfloat16)
        self.model, self.inner = model, inner
        trained = [p for p in model.parameters() if p.requires_grad]
        self.trainable_count = sum(p.numel() for p in trained)
        self.params = trained
        decay = [p for p in trained if p.ndim >= 2]
        no_decay = [p for p in trained if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": 0.0}, {"params": no_decay, "weight_decay": 0.0}]  # ours: 0 too
        self.opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
        self.forward = torch.compile(self._loss) if compile_model else self._loss
        b, t, s, d = host["vision_patches"].shape
        self.ids = torch.from_numpy(host["input_ids"].astype(np.int64))
        self.mask = torch.from_numpy(host["attention_mask"].astype(np.int64))
        self.pos = torch.from_numpy(host["position_ids"].astype(np.int64))
        self.pixels = torch.from_numpy(host["vision_patches"].reshape(b * t * s, d))
        self.grid = torch.tensor([[t, *(int(math.isqrt(s)),) * 2]] * b)
        weights = host["loss_mask"][:, 1:] * host["valid"][:, None]
        labels = np.where(host["loss_mask"] > 0, host["input_ids"], -100).astype(np.int64)
        self.labels = torch.from_numpy(labels)
        self.where = torch.from_numpy(weights > 0)
        self.targets = torch.from_numpy(host["input_ids"][:, 1:].astype(np.int64))[self.where]
        model.train()

    def _loss(self):
        torch = self.torch
        if self.variant == "labels":
            return self.model(input_ids=self.ids, attention_mask=self.mask, position_ids=self.pos,
                              pixel_values_videos=self.pixels, video_grid_thw=self.grid, labels=self.labels,
                              use_cache=False).loss
        inner = self.inner
        embeds = inner.model.embed_tokens(self.ids)
        video = inner.visual(self.pixels.type(inner.visual.get_dtype()), grid_thw=self.grid)
        where = (self.ids == self.cfg.video_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(where, video.to(embeds.dtype))
        hidden = inner.model(input_ids=None, position_ids=self.pos, attention_mask=self.mask, inputs_embeds=embeds,
                             use_cache=False)[0]
        logits = inner.lm_head(hidden[:, :-1][self.where]).float()
        return torch.nn.functional.cross_entropy(logits, self.targets)

    def run(self) -> float:
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.forward()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        return float(loss)


# ----------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------
def flops_by_part(cfg: Qwen2VLConfig, shape: Shape, head_positions: int) -> dict[str, float]:
    """Analytic train-step FLOPs (`plan.flops.train_step_flops`, LoRA recipe) with the LM head
    counted at `head_positions` positions (the ones a side actually computes)."""
    parts = train_step_flops(cfg, shape.workload(cfg), method="lora", lora_rank=LORA_RANK)
    parts["lm_head"] *= head_positions / (shape.batch * shape.length)
    parts["total"] = sum(v for k, v in parts.items() if k != "total")
    return parts


def timed(fn, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def run_policy(dtype: str, cfg: Qwen2VLConfig, shape: Shape, host: dict, args) -> dict[str, float]:
    """Times ours and the torch variants under one dtype policy; returns tokens/s by side."""
    tokens = shape.batch * shape.length
    targets = int((host["loss_mask"][:, 1:] * host["valid"][:, None]).sum())
    t0 = time.perf_counter()
    ours = Ours(cfg, shape, host, dtype, args.loss_positions)
    loss = ours.run()
    print(f"[{dtype}] ours: {ours.trainable_count:,} trained + {ours.frozen_count:,} frozen parameters; first step "
          f"(trace + compile + run) {time.perf_counter() - t0:.1f}s, loss {loss:.4f}")
    sides = {"ours": ours}
    head = {"ours": shape.batch * args.loss_positions if args.loss_positions else tokens}
    if args.torch_variants:
        weights, adapters = ours.hf_tensors()
        for variant in args.torch_variants.split(","):
            side = Torch(cfg, shape, host, dtype, weights, adapters, variant, args.torch_compile)
            t0 = time.perf_counter()
            loss_t = side.run()
            print(f"[{dtype}] torch/{variant}: {side.trainable_count:,} trained; first step "
                  f"{time.perf_counter() - t0:.1f}s, loss {loss_t:.4f} (ours {loss:.4f})")
            sides[f"torch/{variant}"] = side
            head[f"torch/{variant}"] = tokens if variant == "labels" else targets
    compiles0, cache0 = ours.compiles, ours.cache_size()  # after the first call (which compiled)
    jdtype = jnp.bfloat16 if dtype == "bf16" else jnp.float32
    times, peaks = {name: [] for name in sides}, []
    for _ in range(args.rounds):  # alternate, so that load from other processes hits every side alike
        peaks.append(measure_matmul_peak(2048, jdtype, repeats=3))
        for name, side in sides.items():
            times[name].append(timed(side.run, args.steps))
        if ours.compiles != compiles0 or ours.cache_size() != cache0 or ours.step.traces != 1:
            raise RuntimeError(f"our train step recompiled: {ours.compiles - compiles0} XLA compilations, jit cache "
                               f"{cache0} -> {ours.cache_size()} entries, {ours.step.traces} traces")
    peak = statistics.median(peaks)
    print(f"[{dtype}] our step compiled once: {args.rounds * args.steps} steps after the first, 0 compilations, "
          f"1 trace, jit cache size {ours.cache_size()}")
    print(f"[{dtype}] matmul peak (2048^3, {dtype}), measured between the rounds: median {peak / 1e9:.1f}, best "
          f"{max(peaks) / 1e9:.1f} GFLOP/s")
    print(f"[{dtype}] {'':14s}{'median s':>9s}{'best s':>8s}{'tokens/s':>10s}{'GFLOP':>8s}{'GFLOP/s':>9s}{'MFU':>7s}")
    rates = {}
    for name, ts in times.items():
        med, best = statistics.median(ts), min(ts)
        total = flops_by_part(cfg, shape, head[name])["total"]
        rates[name] = tokens / med
        print(f"[{dtype}] {name:14s}{med:>9.2f}{best:>8.2f}{tokens / med:>10.0f}{total / 1e9:>8.1f}"
              f"{total / med / 1e9:>9.1f}{total / med / peak:>7.1%}")
    for name in rates:
        if name != "ours":
            print(f"[{dtype}] ours / {name}: {rates['ours'] / rates[name]:.2f}x tokens/s (median step times)")
    parts = flops_by_part(cfg, shape, head["ours"])
    print(f"[{dtype}] ours, analytic GFLOP per step by part: "
          + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in parts.items()))
    ours.close()
    return rates


# glibc malloc: every allocation from one heap (no per-thread arenas, no mmap for large blocks),
# never trimmed. XLA:CPU allocates each execution's temporaries afresh (1.15 GB in one block for
# this step at batch 4) and glibc serves blocks over 32 MB with mmap and frees them with munmap,
# so every step page-faulted 280,000 fresh pages in again: 0.7 s of kernel time in a ~3.4 s step.
# From a kept heap the same memory is reused with no faults. Set for the whole process, so torch
# runs with it too (its large tensors come from the same malloc).
MALLOC_TUNABLES = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"


def reexec_with_malloc_tunables() -> None:
    """Restarts this script with GLIBC_TUNABLES=MALLOC_TUNABLES (read by glibc at start-up only),
    unless it is set already or SF2T_BENCH_MALLOC=default."""
    if os.environ.get("GLIBC_TUNABLES") or os.environ.get("SF2T_BENCH_MALLOC") == "default":
        return
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "GLIBC_TUNABLES": MALLOC_TUNABLES})


def main():
    reexec_with_malloc_tunables()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4, help="samples per step")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112, help="frame height and width (multiple of 28)")
    parser.add_argument("--length", type=int, default=512, help="tokens per sample")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1, help="steps per side per round")
    parser.add_argument("--dtype", choices=("bf16", "fp32", "both"), default="bf16")
    parser.add_argument("--loss-positions", type=int, default=16,
                        help="ours: the LM head at this many answer positions per row (0: at every position)")
    parser.add_argument("--torch-variants", default="labels,gather", help="comma-separated; '' = ours only")
    parser.add_argument("--torch-compile", action="store_true", help="torch.compile the torch loss function")
    args = parser.parse_args()

    import torch

    threads = os.cpu_count()
    torch.set_num_threads(threads)
    cfg = bench_config()
    shape = Shape(args.batch, args.frames, args.size, args.length)
    host = make_batch(cfg, shape)
    targets = int((host["loss_mask"][:, 1:] * host["valid"][:, None]).sum())
    print(f"model: Qwen2-VL architecture, LLM {cfg.text.num_hidden_layers} x {cfg.text.hidden_size} (vocab "
          f"{cfg.text.vocab_size}, tied), ViT {cfg.vision.depth} x {cfg.vision.embed_dim}; LoRA r={LORA_RANK} "
          f"alpha={LORA_ALPHA:g} on q/k/v/o/gate/up/down, merger trained, ViT frozen, AdamW")
    print(f"batch: {shape.batch} x {shape.length} tokens ({int(host['attention_mask'].sum())} real, {targets} "
          f"targets), {shape.frames} frames of {shape.size}x{shape.size} = {shape.slices(cfg)} slices x "
          f"{shape.grid(cfg) ** 2} patches per sample")
    print(f"CPU: {threads} cores, XLA on {jax.device_count()} device (all cores), torch.set_num_threads({threads}); "
          f"load average {os.getloadavg()[0]:.1f} at start; GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}")
    rates = {}
    for dtype in (("bf16", "fp32") if args.dtype == "both" else (args.dtype,)):
        print()
        rates.update({f"{name} [{dtype}]": r for name, r in run_policy(dtype, cfg, shape, host, args).items()})
    if len(rates) > 2:
        ours = max((k for k in rates if k.startswith("ours")), key=rates.get)
        torch_best = max((k for k in rates if not k.startswith("ours")), key=rates.get)
        print(f"\nacross dtype policies: the fastest of ours ({ours}) / the fastest torch ({torch_best}): "
              f"{rates[ours] / rates[torch_best]:.2f}x tokens/s")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
