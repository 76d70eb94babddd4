"""Items -> prompts (host, numpy) -> static-shape batches for the jitted scorers.

A `Prompt` is one item fully encoded by the scored family's `RowFormat` (`models.rows`, the
input pipeline's: the same slices and chat template as a training sample): its chat tokens
with their positions, its vision slices, and the token ids of each option's continuation.

Questions about the same frames share most of their prompt: the system prompt, the video and,
in a fragment conversation, every earlier turn (turn t's prompt is a prefix of turn t+1's). A
batch therefore packs *groups* (prompts that show one visual and agree up to its last vision
token) into a few long rows, each shared token computed once, followed by the options of
every question of the row (when scoring options):

    row:  [ trunk g1 | branch | branch ][ trunk g2 | branch ][ q1: A | B | C | D ][ q2: ... ] pad
    trunk   the longest common prefix of the group's prompts (the vision tokens included)
    branch  the rest of a prompt that is not a prefix of another one of the group; a prompt
            that is (an earlier turn) ends inside the trunk or another prompt's branch

Every token attends to exactly what it would see in its own prompt alone (`loglik.row_mask`);
for decoding, each question gets a compact view of the cache: its own prompt's slots, in order.

`plan_batches` decides which items share a batch (first-fit-decreasing of whole groups, within
windows of whole videos); `make_batch` spreads a batch's groups over its rows (longest first,
to the shortest row) and lays them out. Lengths round up to powers of two or 1.5 times one
(`length_bucket`), so a whole benchmark compiles a handful of shapes.
"""
from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sf2t_jax.eval.config import EvalSettings
from sf2t_jax.eval.inquiry import Inquiry, option_targets
from sf2t_jax.eval.visuals import VisualLoader, shown_key
from sf2t_jax.finevidbench.schema import LETTERS, Item
from sf2t_jax.models.rows import RowFormat
from sf2t_jax.models.slices import SliceLayout
from sf2t_jax.models.vision import VisionPatches
from sf2t_jax.text import Tokenizer

MAX_OPTIONS = len(LETTERS)
WINDOW_BATCHES = 16  # planning packs groups over windows of whole videos of at least this many batches
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One item, encoded.

    input_ids: (L,) int32 chat tokens ending with the generation prompt ("<|im_start|>assistant\\n",
      "ASSISTANT:").
    position_ids: (3, L) int32 positions (M-RoPE, or 1D on three equal rows); rope_delta: max
      position + 1 - L.
    slices: (S, gh*gw, patch_dim) float32 vision slices, in the order their tokens appear.
    grid_hw: (gh, gw) of every slice, in patches.
    tokens_per_slice: the LLM tokens one slice becomes (the family's merge or pooling).
    vision_positions: (S * tokens_per_slice,) positions of the vision tokens in input_ids.
    options: one (T_k,) int32 array per option: the continuation loglik scores.
    visual_key: `visuals.Visual.key`: prompts with equal keys show equal pixels.
    """

    item: Item
    input_ids: np.ndarray
    position_ids: np.ndarray
    rope_delta: int
    slices: np.ndarray
    grid_hw: tuple[int, int]
    tokens_per_slice: int
    vision_positions: np.ndarray
    options: tuple[np.ndarray, ...]
    visual_key: tuple = ()

    def share_key(self) -> Hashable:
        """Prompts with one key may share a trunk: same pixels, same tokens up to the last
        vision token (so the vision features land on the same shared slots)."""
        end = int(self.vision_positions[-1]) + 1 if len(self.vision_positions) else 0
        return self.visual_key or id(self), self.input_ids[:end].tobytes()


def build_prompt(item: Item, inquiry: Inquiry, visuals: VisualLoader, tokenizer: Tokenizer,
                 settings: EvalSettings, answers: Mapping[int, str] | None = None) -> Prompt:
    """The item's prompt in the family of `visuals.rows`.

    answers: {turn: the model's own answer} of the earlier turns (own history); None: gold."""
    rows = visuals.rows
    visual = visuals.visual(item)
    messages = inquiry.messages(item, settings, visual.content, answers)
    label = dict(add_vision_id=True) if visual.kind == "image" else {}  # "Picture k: " before each frame
    enc = rows.encode(tokenizer, messages, add_generation_prompt=True, loss_on="none", **label, **visual.vision)
    # An option's tokens are those the chat template gives the answer after the generation
    # prompt (checked against the template with the answer appended in tests/test_eval_parity.py).
    end = [rows.end_id(tokenizer)] if settings.score_end else []
    options = tuple(np.concatenate([rows.answer_ids(tokenizer, t), np.asarray(end, np.int32)]).astype(np.int32)
                    for t in option_targets(item, settings.loglik_target))
    if any(len(o) == 0 for o in options):
        raise ValueError(f"item {item.item_id}: an option encodes to no tokens")
    positions = np.flatnonzero(np.isin(enc.input_ids, rows.vision_token_ids(tokenizer)))
    per_slice = rows.layout.tokens_per_slice(visual.grid_hw)
    if len(positions) != len(visual.slices) * per_slice:
        raise ValueError(f"item {item.item_id}: {len(positions)} vision tokens in the prompt for "
                         f"{len(visual.slices)} slices of {per_slice} tokens")
    return Prompt(item, enc.input_ids, enc.position_ids, enc.rope_delta, visual.slices, visual.grid_hw, per_slice,
                  positions, options, visual.key)


def pow2_bucket(n: int, minimum: int) -> int:
    """The smallest power of two that is >= n and >= minimum."""
    size = 1 << max(minimum - 1, 0).bit_length()
    while size < n:
        size *= 2
    return size


def length_bucket(n: int, minimum: int) -> int:
    """The smallest of minimum * 2**k and 1.5 * minimum * 2**k (k >= 0, minimum rounded up to a
    power of two) that is >= n: at most a third of padding, about two shapes per doubling."""
    size = pow2_bucket(n, minimum)
    three_quarters = 3 * size // 4
    return three_quarters if size > pow2_bucket(minimum, 1) and three_quarters >= n else size


# ----------------------------------------------------------------------------------------
# Planning: which questions share a batch and a row
# ----------------------------------------------------------------------------------------
def pack_groups(units: Sequence[T], key: Callable[[T], Hashable], capacity: int) -> list[list[T]]:
    """Groups `units` by `key` (first-appearance order) and packs whole groups into bins of at
    most `capacity` units, first fit by decreasing size; a group larger than a bin is split.
    Each bin lists its groups one after the other."""
    groups: dict[Hashable, list[T]] = collections.defaultdict(list)
    for u in units:
        groups[key(u)].append(u)
    pieces = [g[i:i + capacity] for g in groups.values() for i in range(0, len(g), capacity)]
    bins: list[list[T]] = []
    for piece in sorted(pieces, key=len, reverse=True):  # stable: ties keep file order
        fit = next((b for b in bins if len(b) + len(piece) <= capacity), None)
        if fit is None:
            bins.append(fit := [])
        fit.extend(piece)
    return bins


def plan_batches(items: Sequence[Item], settings: EvalSettings) -> list[list[Item]]:
    """Batches of at most `settings.batch_size` items.

    Items that show the same frames (`visuals.shown_key`) go to one batch, so they can share
    a trunk. Packing runs over windows of whole videos (items of one video are contiguous in a
    benchmark file), so a batch never reaches far ahead and the decoded-clip cache stays small.
    Without `settings.share_prefix`, items are batched in file order.
    """
    n = settings.batch_size
    if not settings.share_prefix:
        return [list(items[i:i + n]) for i in range(0, len(items), n)]
    return [b for window in video_windows(items, WINDOW_BATCHES * n)
            for b in pack_groups(window, lambda it: shown_key(it, settings), n)]


def video_windows(items: Sequence[Item], size: int) -> list[list[Item]]:
    """Consecutive runs of whole videos, each of at least `size` items (the last may be less)."""
    windows, current, last = [], [], None
    for it in items:
        if it.video_id != last and len(current) >= size:
            windows.append(current)
            current = []
        current.append(it)
        last = it.video_id
    return windows + [current] if current else windows


# ----------------------------------------------------------------------------------------
# The batch
# ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Batch:
    """R packed rows of tokens and N questions (real ones first, then padding).

    Rows (the prefill, `loglik.prefill_shared`):
      input_ids: (R, L) int32: each group's trunk and branches, then (when scoring options) the
        options of every question of the row back to back, then padding.
      position_ids: (3, R, L) int32: each token's position in its own prompt (or answer).
      token_group: (R, L) int32: 1, 2, ... for the group (of the row) a token belongs to; 0 pads.
      token_branch: (R, L) int32: 0 in a trunk, k >= 1 in the group's k-th branch.
      token_end: (R, L) int32: option tokens see prompt slots before this (their question's
        last token + 1); L for prompt tokens.
      token_option: (R, L) int32: 1, 2, ... for the option (of the row) a token belongs to; 0 else.
      vision: one `VisionPatches` with (S, gh*gw, patch_dim) slices: each group's frames once.
      vision_index: (S * tokens_per_slice,) int32 flat index (into R*L) of each merged token;
        R*L (dropped by the scatter) for padding slices.
    Questions:
      item_last: (N,) int32 flat index (into R*L) of the prompt's last token.
      option_first, option_count: (N, K) int32: each option's first token and length (0: none).
      score_from, score_token, score_option: (M,) int32: every option token after the first, as
        (flat R*L index of the token before it, the token, flat N*K option index; N*K pads).
      item_row: (N,) int32 the row holding question n's prompt.
      item_view: (N, V) int32 the row slots of the prompt's tokens, in order; item_view_mask
        (N, V) bool, True for the first len(prompt) entries.
      rope_deltas: (N,) int32: a new token at view slot s has position s + delta.
      decode_budget: (N,) int32 tokens greedy decoding may generate for each question (its
        method's budget; 0 for padding questions).
      example_mask: (N,) bool, True for real questions.
    prompts: the real questions' prompts, in question order (host metadata, not sent).
    new_tokens: greedy decoding budget (static).
    """

    input_ids: np.ndarray
    position_ids: np.ndarray
    token_group: np.ndarray
    token_branch: np.ndarray
    token_end: np.ndarray
    token_option: np.ndarray
    vision: tuple[VisionPatches, ...]
    vision_index: np.ndarray
    item_last: np.ndarray
    option_first: np.ndarray
    option_count: np.ndarray
    score_from: np.ndarray
    score_token: np.ndarray
    score_option: np.ndarray
    item_row: np.ndarray
    item_view: np.ndarray
    item_view_mask: np.ndarray
    rope_deltas: np.ndarray
    decode_budget: np.ndarray
    example_mask: np.ndarray
    prompts: tuple[Prompt, ...]
    new_tokens: int

    @property
    def shape_key(self) -> tuple[int, ...]:
        """(rows, row length, vision slices, questions, view length, scored option tokens):
        what the jitted functions compile for."""
        r, l = self.input_ids.shape
        n, v = self.item_view.shape
        return r, l, self.vision[0].patches.shape[0], n, v, len(self.score_from)

    def device_arrays(self) -> dict:
        """The arrays the scorers take. Padding questions need no mask on the device: their
        options are all missing (NLL +inf) and the host grades only `prompts`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("prompts", "new_tokens", "example_mask")}

    def token_counts(self) -> dict:
        """Real tokens of the questions' prompts vs the prompt tokens the prefill computes
        (each shared prefix once) and all its row slots (with options and padding)."""
        return {"prompt_tokens": int(self.item_view_mask.sum()),
                "row_tokens": int(((self.token_group > 0) & (self.token_option == 0)).sum()),
                "padded_row_tokens": int(self.input_ids.size)}


@dataclasses.dataclass(frozen=True)
class Shapes:
    """Per-run static sizes, so that only the row and view lengths vary between batches."""

    rows: int  # packed rows per batch
    slices: int  # vision slices per batch
    scored_tokens: int  # M: option tokens after each option's first, over a batch
    new_tokens: int  # greedy decoding budget: the open-answer budget if any item is open


def item_slices(item: Item, settings: EvalSettings, layout: SliceLayout) -> int:
    """Vision slices an item shows, counted from the item (no decoding)."""
    if item.frames is None:
        return layout.slices(settings.scene_frames)
    n = len(item.frames)
    return n if settings.present == "images" else layout.slices(n)


def plan_shapes(items: Sequence[Item], tokenizer: Tokenizer, settings: EvalSettings, rows: RowFormat,
                plan: Sequence[Sequence[Item]] | None = None, shards: int = 1) -> Shapes:
    """Shapes of the batches of `items` in the family of `rows`: rows per batch (`EvalSettings.rows_for(shards)`), vision slices per batch (the most any planned batch shows, each group's frames once,
    rounded up to a power of two) and scored option tokens per batch (the most of any batch,
    rounded up to a multiple of `min_option_length`; options are tokenized up front, which is
    cheap)."""
    plan = plan_batches(items, settings) if plan is None else plan
    key = (lambda it: shown_key(it, settings)) if settings.share_prefix else id

    def batch_slices(batch):
        return sum(item_slices(g[0], settings, rows.layout) for g in _by(batch, key).values())

    targets = [option_targets(it, settings.loglik_target) for it in items]
    scored = {it.item_id: sum(len(rows.answer_ids(tokenizer, t)) + int(settings.score_end) - 1 for t in ts)
              for it, ts in zip(items, targets)}
    most = max(sum(scored[it.item_id] for it in b) for b in plan) if "loglik" in settings.methods else 0
    return Shapes(rows=settings.rows_for(shards), slices=pow2_bucket(max(map(batch_slices, plan)), 1),
                  scored_tokens=_round_up(max(most, 1), settings.min_option_length),
                  new_tokens=new_tokens(settings, any(not it.options for it in items)))


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def new_tokens(settings: EvalSettings, has_open: bool) -> int:
    return max(settings.max_new_tokens, settings.max_new_tokens_open) if has_open else settings.max_new_tokens


def _by(units, key) -> dict:
    groups = collections.defaultdict(list)
    for u in units:
        groups[key(u)].append(u)
    return groups


@dataclasses.dataclass
class _Group:
    """Prompts of a row that share a trunk: its length, the branches, each prompt's branch."""

    prompts: list[Prompt]
    trunk: int  # shared prefix length
    branches: list[Prompt]  # the prompts whose tails are laid out after the trunk
    branch_of: list[int]  # per prompt: the branch its tail lies in

    @classmethod
    def of(cls, prompts: list[Prompt]) -> "_Group":
        trunk = _common_prefix([p.input_ids for p in prompts])
        branches: list[Prompt] = []
        branch_of = [0] * len(prompts)
        for i in sorted(range(len(prompts)), key=lambda i: -len(prompts[i].input_ids)):
            ids = prompts[i].input_ids
            k = next((k for k, b in enumerate(branches) if np.array_equal(b.input_ids[:len(ids)], ids)), None)
            if k is None:
                k = len(branches)
                branches.append(prompts[i])
            branch_of[i] = k
        return cls(prompts, trunk, branches, branch_of)

    @property
    def length(self) -> int:
        return self.trunk + sum(len(b.input_ids) - self.trunk for b in self.branches)


def _common_prefix(seqs: list[np.ndarray]) -> int:
    n = min(len(s) for s in seqs)
    same = np.all([s[:n] == seqs[0][:n] for s in seqs[1:]], axis=0) if len(seqs) > 1 else np.ones(n, bool)
    return n if same.all() else int(np.argmin(same))


def make_batch(prompts: Sequence[Prompt], *, batch_size: int, pad_id: int, settings: EvalSettings,
               shapes: Shapes | None = None) -> Batch:
    """Lays out `prompts` (at most `batch_size`) as one static-shape batch.

    Prompts with one `Prompt.share_key` form a group (unless `settings.share_prefix` is off:
    then every prompt is its own group); groups go to the `shapes.rows` rows longest first,
    each to the shortest row so far. Options are laid out when `settings.methods` has loglik.

    Args:
      shapes: fixed sizes (`plan_shapes`); None sizes them to this batch.
    """
    if not 1 <= len(prompts) <= batch_size:
        raise ValueError(f"make_batch: {len(prompts)} prompts for a batch of {batch_size}")
    grids = {(p.grid_hw, p.slices.shape[2], p.tokens_per_slice) for p in prompts}
    if len(grids) != 1:
        raise ValueError(f"prompts of one batch need one vision grid, got {sorted(grids)}")
    ((gh, gw), patch_dim, tokens_per_slice), = grids
    patches_per_slice = gh * gw
    scoring = "loglik" in settings.methods
    key = Prompt.share_key if settings.share_prefix else id
    all_groups = [_Group.of(g) for g in _by(prompts, key).values()]
    scored = sum(len(o) - 1 for p in prompts for o in p.options) if scoring else 0
    slices = sum(len(g.prompts[0].slices) for g in all_groups)
    if shapes is None:
        shapes = Shapes(settings.rows_for(), pow2_bucket(slices, 1), _round_up(max(scored, 1), settings.min_option_length),
                        new_tokens(settings, any(not p.options for p in prompts)))
    if slices > shapes.slices or scored > shapes.scored_tokens:
        raise ValueError(f"make_batch: {slices} vision slices and {scored} scored option tokens exceed the "
                         f"planned shapes {shapes}")
    n_rows, m = shapes.rows, shapes.scored_tokens
    tokens = lambda g: g.length + (sum(len(o) for p in g.prompts for o in p.options) if scoring else 0)
    groups: list[list[_Group]] = [[] for _ in range(n_rows)]
    filled = [0] * n_rows
    for g in sorted(all_groups, key=tokens, reverse=True):  # longest first, to the shortest row
        r = filled.index(min(filled))
        groups[r].append(g)
        filled[r] += tokens(g)
    length = length_bucket(max(filled), settings.min_length)
    view = length_bucket(max(len(p.input_ids) for p in prompts), settings.min_length)
    b = batch_size
    input_ids = np.full((n_rows, length), pad_id, np.int32)
    position_ids = np.ones((3, n_rows, length), np.int32)
    token_group = np.zeros((n_rows, length), np.int32)
    token_branch = np.zeros((n_rows, length), np.int32)
    token_end = np.full((n_rows, length), length, np.int32)
    token_option = np.zeros((n_rows, length), np.int32)
    patches = np.zeros((shapes.slices, patches_per_slice, patch_dim), np.float32)
    vision_index = np.full((shapes.slices * tokens_per_slice,), n_rows * length, np.int32)
    slice_at = 0
    item_last = np.zeros((b,), np.int32)
    option_first = np.full((b, MAX_OPTIONS), pad_id, np.int32)
    option_count = np.zeros((b, MAX_OPTIONS), np.int32)
    score_from, score_token = np.zeros((m,), np.int32), np.full((m,), pad_id, np.int32)
    score_option = np.full((m,), b * MAX_OPTIONS, np.int32)
    item_row = np.zeros((b,), np.int32)
    item_view = np.zeros((b, view), np.int32)
    item_view_mask = np.zeros((b, view), bool)
    rope_deltas = np.zeros((b,), np.int32)
    decode_budget = np.zeros((b,), np.int32)
    example_mask = np.zeros((b,), bool)
    order: list[Prompt] = []
    scored = 0
    for r, row_groups in enumerate(groups):
        slot = 0
        placed = []  # (prompt, group index, branch, its slots in the row)
        for g_index, g in enumerate(row_groups, 1):
            head = g.branches[0]
            trunk = slice(slot, slot + g.trunk)
            input_ids[r, trunk] = head.input_ids[:g.trunk]
            position_ids[:, r, trunk] = head.position_ids[:, :g.trunk]
            token_group[r, trunk] = g_index
            starts = []
            at = trunk.stop
            for k, branch in enumerate(g.branches, 1):
                tail = slice(at, at + len(branch.input_ids) - g.trunk)
                input_ids[r, tail] = branch.input_ids[g.trunk:]
                position_ids[:, r, tail] = branch.position_ids[:, g.trunk:]
                token_group[r, tail] = g_index
                token_branch[r, tail] = k
                starts.append(at)
                at = tail.stop
            # The group's frames, once: every prompt of the group has them at the same slots.
            n_slices = len(head.slices)
            tokens = slot + head.vision_positions
            if len(tokens) != n_slices * tokens_per_slice or (len(tokens) and tokens[-1] >= trunk.stop):
                raise ValueError(f"item {head.item.item_id}: {len(head.vision_positions)} vision pad tokens for "
                                 f"{n_slices} slices of {tokens_per_slice} merged tokens, within the shared prefix")
            patches[slice_at:slice_at + n_slices] = head.slices
            vision_index[slice_at * tokens_per_slice:(slice_at + n_slices) * tokens_per_slice] = r * length + tokens
            slice_at += n_slices
            for p, k in zip(g.prompts, g.branch_of):
                own = np.concatenate([np.arange(trunk.start, trunk.stop),
                                      starts[k] + np.arange(len(p.input_ids) - g.trunk)])
                placed.append((p, g_index, k + 1, own))
            slot = at
        option_id = 0
        for p, g_index, branch, own in placed:
            q = len(order)
            n = len(p.input_ids)
            item_last[q] = r * length + own[-1]
            item_row[q] = r
            item_view[q, :n] = own
            item_view_mask[q, :n] = True
            following = p.rope_delta + n  # the position after the prompt's last
            rope_deltas[q] = following - view  # new tokens start at view slot `view`
            budget = settings.max_new_tokens if p.item.options else settings.max_new_tokens_open
            decode_budget[q] = min(budget, shapes.new_tokens)
            example_mask[q] = True
            order.append(p)
            if not scoring:
                continue
            for j, o in enumerate(p.options):
                option_id += 1
                span = slice(slot, slot + len(o))
                input_ids[r, span] = o
                position_ids[:, r, span] = following + np.arange(len(o))
                token_group[r, span], token_branch[r, span] = g_index, branch
                token_end[r, span], token_option[r, span] = own[-1] + 1, option_id
                option_first[q, j], option_count[q, j] = o[0], len(o)
                rest = slice(scored, scored + len(o) - 1)
                score_from[rest] = r * length + np.arange(span.start, span.stop - 1)
                score_token[rest] = o[1:]
                score_option[rest] = q * MAX_OPTIONS + j
                slot, scored = span.stop, rest.stop
    return Batch(input_ids, position_ids, token_group, token_branch, token_end, token_option,
                 (VisionPatches(patches=patches, grid_hw=(gh, gw)),), vision_index, item_last, option_first,
                 option_count, score_from, score_token, score_option, item_row, item_view, item_view_mask,
                 rope_deltas, decode_budget, example_mask, tuple(order), shapes.new_tokens)


# ----------------------------------------------------------------------------------------
# Sharding: rows and questions over the mesh's batch axes, everything else replicated
# ----------------------------------------------------------------------------------------
# The mesh axes rows split over are the training batch's (`batch_axes(mesh, rules)`: the axes the
# logical 'batch' axis maps to, present in `mesh`); the scorer imports them from here.
from sf2t_jax.batch import batch_axes  # noqa: E402, F401  (re-exported)


def put_on_mesh(arrays: dict, mesh: Mesh, axes: tuple[str, ...]) -> dict:
    """Places a batch's device arrays: rows and questions split over `axes` (position_ids:
    dimension 1); the vision slices and the scored-token lists replicated."""
    split = PartitionSpec(axes or None)
    row_or_question = {f.name for f in dataclasses.fields(Batch)} - {"vision", "vision_index", "score_from",
                                                                      "score_token", "score_option"}

    def place(name, x):
        spec = (PartitionSpec(None, axes or None) if name == "position_ids" else split if name in row_or_question
                else PartitionSpec())
        return jax.device_put(x, NamedSharding(mesh, spec))

    out = {k: place(k, v) for k, v in arrays.items() if k != "vision"}
    out["vision"] = tuple(VisionPatches(patches=place("patches", g.patches), grid_hw=g.grid_hw)
                          for g in arrays["vision"])
    return out
