"""Items -> prompts (host, numpy) -> static-shape batches for the jitted scorers.

A `Prompt` is one item fully encoded: its chat tokens with M-RoPE positions, its vision slices,
and the token ids of each option's continuation. `make_batch` left-pads prompts to a shared
length (so every row writes the KV cache at the same slot), right-pads options, pads vision
slices per row, and fills the batch up to `batch_size` with empty rows that `example_mask`
marks. Lengths round up to powers of two, so a whole benchmark compiles a handful of shapes.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sf2t_jax.eval.config import EvalSettings
from sf2t_jax.eval.inquiry import Inquiry, option_targets
from sf2t_jax.eval.visuals import VisualLoader
from sf2t_jax.finevidbench.schema import LETTERS, Item
from sf2t_jax.models.vision import VisionPatches
from sf2t_jax.text import Tokenizer, encode_chat

MAX_OPTIONS = len(LETTERS)


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One item, encoded.

    input_ids: (L,) int32 chat tokens ending with "<|im_start|>assistant\\n".
    position_ids: (3, L) int32 M-RoPE positions; rope_delta: max position + 1 - L.
    slices: (S, gh*gw, patch_dim) float32 vision slices, in the order their tokens appear.
    grid_hw: (gh, gw) of every slice, in patches.
    vision_positions: (S * gh*gw / merge**2,) positions of the vision pad tokens in input_ids.
    options: one (T_k,) int32 array per option: the continuation loglik scores.
    """

    item: Item
    input_ids: np.ndarray
    position_ids: np.ndarray
    rope_delta: int
    slices: np.ndarray
    grid_hw: tuple[int, int]
    vision_positions: np.ndarray
    options: tuple[np.ndarray, ...]


def build_prompt(item: Item, inquiry: Inquiry, visuals: VisualLoader, tokenizer: Tokenizer,
                 settings: EvalSettings, merge: int = 2) -> Prompt:
    visual = visuals.visual(item)
    messages = inquiry.messages(item, settings, visual.content)
    grids = dict(video_grid_thw=visual.grid_thw) if visual.kind == "video" else dict(image_grid_thw=visual.grid_thw)
    enc = encode_chat(tokenizer, messages, add_generation_prompt=True, add_vision_id=visual.kind == "image",
                      loss_on="none", spatial_merge_size=merge, **grids)
    # An option's tokens are those of the answer text on its own: Qwen2's pre-tokenizer splits
    # at the "\n" that ends "assistant\n", so no BPE merge crosses into the answer (checked
    # against encode_chat with the answer appended in tests/test_eval_batching.py).
    end = [tokenizer.special.im_end] if settings.score_end else []
    options = tuple(np.asarray(list(tokenizer.encode(t)) + end, np.int32)
                    for t in option_targets(item, settings.loglik_target))
    if any(len(o) == 0 for o in options):
        raise ValueError(f"item {item.item_id}: an option encodes to no tokens")
    special = tokenizer.special
    positions = np.flatnonzero(np.isin(enc.input_ids, [special.image_pad, special.video_pad]))
    grid_hw = (int(visual.grid_thw[0, 1]), int(visual.grid_thw[0, 2]))
    return Prompt(item, enc.input_ids, enc.position_ids, enc.rope_delta, visual.slices, grid_hw, positions,
                  options)


def pow2_bucket(n: int, minimum: int) -> int:
    """The smallest power of two that is >= n and >= minimum."""
    size = 1 << max(minimum - 1, 0).bit_length()
    while size < n:
        size *= 2
    return size


@dataclasses.dataclass(frozen=True)
class Batch:
    """B rows (real prompts first, then empty padding rows).

    input_ids, attention_mask: (B, L) int32, left-padded.
    position_ids: (3, B, L) int32.
    rope_deltas: (B,) int32 for the padded rows: decoding continues at slot + delta.
    vision: one `VisionPatches` with (B*P, gh*gw, patch_dim) slices; row b owns [b*P, (b+1)*P).
    vision_index: (B, P * gh*gw / merge**2) int32 position of each merged token in its row;
      L (dropped by the scatter) for padding slices.
    option_ids: (B, K, T) int32 right-padded continuations, K = 4; option_mask (B, K, T) bool.
    example_mask: (B,) bool, True for real rows.
    prompts: the real rows' prompts (host metadata, not sent to the device).
    new_tokens: greedy decoding budget (static).
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    position_ids: np.ndarray
    rope_deltas: np.ndarray
    vision: tuple[VisionPatches, ...]
    vision_index: np.ndarray
    option_ids: np.ndarray
    option_mask: np.ndarray
    example_mask: np.ndarray
    prompts: tuple[Prompt, ...]
    new_tokens: int

    @property
    def shape_key(self) -> tuple[int, int, int, int]:
        """(B, L, slices per row, option length): what the jitted functions compile for."""
        b, l = self.input_ids.shape
        return b, l, self.vision[0].patches.shape[0] // b, self.option_ids.shape[2]

    def device_arrays(self) -> dict:
        """The arrays the scorers take. Padding rows need no mask on the device: their options
        are all masked (NLL +inf) and the host grades only `prompts`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("prompts", "new_tokens", "example_mask")}


@dataclasses.dataclass(frozen=True)
class Shapes:
    """Per-run static sizes: vision slices per row and option tokens, fixed for a whole run
    so that only the prompt length (a power of two) varies between batches."""

    slices_per_row: int
    option_length: int
    new_tokens: int  # greedy decoding budget: the open-answer budget if any item is open


def plan_shapes(items: Sequence[Item], tokenizer: Tokenizer, settings: EvalSettings,
                temporal_patch: int = 2) -> Shapes:
    """The largest slice count and option length over `items` (options tokenized up front,
    which is cheap; frames counted from the item, no decoding), rounded up to powers of two."""
    def slices(item: Item) -> int:
        if item.frames is None:
            return -(-settings.scene_frames // temporal_patch)
        n = len(item.frames)
        return n if settings.present == "images" else -(-n // temporal_patch)

    texts = [t for it in items for t in option_targets(it, settings.loglik_target)]
    longest = max((len(ids) for ids in tokenizer.encode_batch(texts)), default=0) + int(settings.score_end)
    return Shapes(slices_per_row=pow2_bucket(max(slices(it) for it in items), 1),
                  option_length=pow2_bucket(max(longest, 1), settings.min_option_length),
                  new_tokens=new_tokens(settings, any(not it.options for it in items)))


def new_tokens(settings: EvalSettings, has_open: bool) -> int:
    return max(settings.max_new_tokens, settings.max_new_tokens_open) if has_open else settings.max_new_tokens


def make_batch(prompts: Sequence[Prompt], *, batch_size: int, pad_id: int, settings: EvalSettings,
               shapes: Shapes | None = None, merge: int = 2) -> Batch:
    """Pads `prompts` (at most `batch_size`) into one static-shape batch.

    Args:
      shapes: fixed slice and option sizes (`plan_shapes`); None sizes them to this batch.
    """
    if not 1 <= len(prompts) <= batch_size:
        raise ValueError(f"make_batch: {len(prompts)} prompts for a batch of {batch_size}")
    grids = {(p.grid_hw, p.slices.shape[2]) for p in prompts}
    if len(grids) != 1:
        raise ValueError(f"prompts of one batch need one vision grid, got {sorted(grids)}")
    ((gh, gw), patch_dim), = grids
    patches_per_slice = gh * gw
    tokens_per_slice = patches_per_slice // merge**2
    b = batch_size
    length = pow2_bucket(max(len(p.input_ids) for p in prompts), settings.min_length)
    if shapes is None:
        shapes = Shapes(pow2_bucket(max(len(p.slices) for p in prompts), 1),
                        pow2_bucket(max((len(o) for p in prompts for o in p.options), default=1),
                                    settings.min_option_length),
                        new_tokens(settings, any(not p.options for p in prompts)))
    per_row, opt_len = shapes.slices_per_row, shapes.option_length
    too_big = [p.item.item_id for p in prompts
               if len(p.slices) > per_row or max(map(len, p.options), default=0) > opt_len]
    if too_big:
        raise ValueError(f"items {too_big} exceed the planned shapes {shapes}")

    input_ids = np.full((b, length), pad_id, np.int32)
    attention_mask = np.zeros((b, length), np.int32)
    position_ids = np.ones((3, b, length), np.int32)
    rope_deltas = np.zeros((b,), np.int32)
    patches = np.zeros((b * per_row, patches_per_slice, patch_dim), np.float32)
    vision_index = np.full((b, per_row * tokens_per_slice), length, np.int32)
    option_ids = np.full((b, MAX_OPTIONS, opt_len), pad_id, np.int32)
    option_mask = np.zeros((b, MAX_OPTIONS, opt_len), bool)
    example_mask = np.zeros((b,), bool)
    for r, p in enumerate(prompts):
        n = len(p.input_ids)
        pad = length - n
        input_ids[r, pad:] = p.input_ids
        attention_mask[r, pad:] = 1
        position_ids[:, r, pad:] = p.position_ids
        rope_deltas[r] = p.rope_delta - pad  # the delta counts from the padded length
        patches[r * per_row:r * per_row + len(p.slices)] = p.slices
        vision_tokens = pad + p.vision_positions
        if len(vision_tokens) != len(p.slices) * tokens_per_slice:
            raise ValueError(f"item {p.item.item_id}: {len(vision_tokens)} vision pad tokens for "
                             f"{len(p.slices)} slices of {tokens_per_slice} merged tokens")
        vision_index[r, :len(vision_tokens)] = vision_tokens
        for k, o in enumerate(p.options):
            option_ids[r, k, :len(o)] = o
            option_mask[r, k, :len(o)] = True
        example_mask[r] = True
    return Batch(input_ids, attention_mask, position_ids, rope_deltas,
                 (VisionPatches(patches=patches, grid_hw=(gh, gw)),), vision_index, option_ids, option_mask,
                 example_mask, tuple(prompts), shapes.new_tokens)


# ----------------------------------------------------------------------------------------
# Sharding: rows over the mesh's batch axes, everything else replicated
# ----------------------------------------------------------------------------------------
def batch_axes(mesh: Mesh, rules) -> tuple[str, ...]:
    """Mesh axes the 'batch' logical axis maps to (configs/sharding.py), present in `mesh`."""
    target = dict(rules).get("batch")
    axes = () if target is None else (target,) if isinstance(target, str) else tuple(target)
    return tuple(a for a in axes if a in mesh.shape)


def put_on_mesh(arrays: dict, mesh: Mesh, axes: tuple[str, ...]) -> dict:
    """Places a batch's device arrays with rows split over `axes` (position_ids: dimension 1)."""
    rows = PartitionSpec(axes or None)

    def place(name, x):
        spec = PartitionSpec(None, axes or None) if name == "position_ids" else rows
        return jax.device_put(x, NamedSharding(mesh, spec))

    out = {k: place(k, v) for k, v in arrays.items() if k != "vision"}
    out["vision"] = tuple(VisionPatches(patches=place("patches", g.patches), grid_hw=g.grid_hw)
                          for g in arrays["vision"])
    return out
