"""The evaluation loop: items -> prompts -> batches -> scorer -> records -> metrics.

    run = evaluate(model, items, EvalSettings.of(config), tokenizer=tok, video_root=root)
    run.metrics["loglik"]["tasks"]["action"]["value"]

Batches are planned up front from the items alone (`batching.plan_batches`: questions about
the same frames share a row, so their prefix is computed once). Under own history
(`EvalSettings.history`, the default) a turn's prompt holds the model's answers to the earlier
turns, so items are asked in rounds by turn (all first turns, then all second turns, ...; the
rounds after the first once per method), batched and prefix-shared within a round; under gold
history everything is one round. The host builds batch i+1
(decode, resize, tokenize) while the device scores batch i; each batch's results come back in
one transfer. Records come out in item order whatever the batching. Training calls the same function every N steps
on a held-out slice (`config.max_videos`), and logs `metrics.summary(run.metrics)`.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence

import numpy as np

from sf2t_jax.eval.batching import (WINDOW_BATCHES, Batch, build_prompt, make_batch, plan_batches, plan_shapes,
                                    video_windows)
from sf2t_jax.eval.config import EvalSettings
from sf2t_jax.eval.inquiry import Inquiry, own_answer, turn_rounds
from sf2t_jax.eval.items import select
from sf2t_jax.eval.metrics import compute_metrics, grade_generation, grade_loglik
from sf2t_jax.eval.scorer import ModelScorer
from sf2t_jax.eval.visuals import ShortClip, VisualLoader
from sf2t_jax.finevidbench.schema import Item
from sf2t_jax.input.skips import NoUsableVideoError
from sf2t_jax.models.rows import QWEN2_VL_ROWS
from sf2t_jax.text import Tokenizer
from sf2t_jax.video import VideoDecodeError

log = logging.getLogger(__name__)

SHORT_CLIP = "short_clip"  # the skip reason of an item whose clip is too short for its speed


@dataclasses.dataclass
class EvalRun:
    """records: one dict per (item, method) (see `metrics`); metrics: {method: ...};
    meta: counts, skipped items, shape buckets, timings."""

    records: list[dict]
    metrics: dict
    meta: dict


class Progress:
    """A log line at most every `every_s` seconds: done/total, rate and ETA."""

    def __init__(self, total: int, label: str, every_s: float):
        self.total, self.label, self.every_s = total, label, every_s
        self.done = 0
        self.start = self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.every_s and (now - self.last >= self.every_s or self.done == self.total):
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate else float("inf")
            log.info("%s: %d/%d questions (%.0f%%), %.1f q/s, ETA %s", self.label, self.done, self.total,
                     100 * self.done / max(self.total, 1), rate, _duration(eta))


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def evaluate(model_or_scorer, items: Sequence[Item], settings: EvalSettings, *,
             tokenizer: Tokenizer, video_root: str, history_items: Sequence[Item] | None = None,
             mesh=None, rules=None, view: str = "real") -> EvalRun:
    """Scores `items` (after the config's task / video selection) and computes the metrics.

    Args:
      model_or_scorer: a `Qwen2VL`, or anything with `dispatch(batch)` / `fetch(pending)`
        (`scorer.oracle_scorer`, `scorer.constant_scorer`).
      items: benchmark items (e.g. `items.load_items(path)`).
      history_items: the items conversations are rebuilt from (default: `items`); pass the
        whole file when `items` is a slice that may cut conversations.
      mesh, rules: split batch rows over the mesh (see `ModelScorer`).
      view: "real", or a control ("static", "blind"): every item's frames shown that way
        (`visuals.apply_view`), everything else (items, prompts, batches, methods) the same.
    """
    if not isinstance(settings, EvalSettings):  # an eval config is converted once, by its entry point
        raise TypeError(f"evaluate takes EvalSettings (EvalSettings.of converts an eval config), got "
                        f"{type(settings).__name__}")
    inquiry = Inquiry(history_items if history_items is not None else items)
    selected = select(items, tasks=settings.tasks, max_videos=settings.max_videos)
    if not selected:
        raise ValueError("eval: no items selected (check the config's tasks and max_videos)")
    if hasattr(model_or_scorer, "dispatch"):
        scorer = model_or_scorer
    else:
        scorer = ModelScorer(model_or_scorer, settings, tokenizer, mesh=mesh, rules=rules)
    # Prompts in the scored family's rows (a scorer that runs no model may leave them Qwen2-VL's).
    rows = getattr(scorer, "row_format", QWEN2_VL_ROWS)
    stops = rows.stop_ids(tokenizer)
    own = settings.history == "own"
    # Own history: a turn's prompt holds the model's answers to the earlier turns, so turns are
    # asked in rounds (every first turn, then every second turn, ...), each earlier turn asked
    # even when a task filter leaves it out (its answer is history, its record is dropped).
    asked = inquiry.with_history(selected) if own else list(selected)
    rounds = turn_rounds(asked) if own else [asked]
    plans = [plan_batches(r, settings) for r in rounds]
    shapes = plan_shapes(asked, tokenizer, settings, rows, [b for p in plans for b in p],
                         shards=getattr(scorer, "shards", 1))
    # A batch may take items from any video of its planning window: keep those clips decoded.
    span = max(len({it.video_id for it in w})
               for w in video_windows(asked, WINDOW_BATCHES * settings.batch_size))
    visuals = VisualLoader(video_root, settings, rows=rows, clips=span + 1, view=view)
    # Each round after the first is asked once per method under own history (each method's
    # history holds its own answers).
    passes = [(k, method) for k in range(len(rounds))
              for method in ((None,) if k == 0 or not own else settings.methods)]
    label = "eval" if view == "real" else f"eval ({view} control)"
    progress = Progress(sum(len(rounds[k]) for k, _ in passes), label, settings.progress_every_s)
    records: list[dict] = []
    skipped: dict[str, dict] = {}  # item id -> why it was not asked (once, whatever the passes)
    unusable_videos: dict[str, str] = {}  # video id -> why it cannot be shown (logged once each)
    buckets: collections.Counter = collections.Counter()
    timing = collections.Counter()
    answers: dict[tuple[str, str], dict[int, str]] = collections.defaultdict(dict)  # (conversation, method)

    def batches(plan, method) -> Iterator[Batch]:
        for planned in plan:
            t0 = time.perf_counter()
            prompts = []
            for item in planned:
                if item.video_id in unusable_videos:  # an earlier round found it broken
                    _skip(item, unusable_videos[item.video_id], "the video did not decode in an earlier turn")
                    continue
                history = None if not own or item.turn == 1 else answers[(item.conversation, method)]
                try:
                    prompts.append(build_prompt(item, inquiry, visuals, tokenizer, settings, answers=history))
                except ShortClip as e:
                    if settings.on_short_clip == "error":
                        raise
                    _skip(item, SHORT_CLIP, str(e))
                except VideoDecodeError as e:  # a missing or broken clip: its items are skipped, not the run
                    if item.video_id not in unusable_videos:
                        unusable_videos[item.video_id] = e.reason
                        log.warning("%s: skipping the items of video %s (%s): %s", label, item.video_id, e.reason,
                                    e.detail)
                    _skip(item, e.reason, e.detail)
            if prompts:
                batch = make_batch(prompts, batch_size=settings.batch_size,
                                   pad_id=rows.pad_id(tokenizer), settings=settings, shapes=shapes)
                timing["host_s"] += time.perf_counter() - t0
                yield batch

    def _skip(item: Item, reason: str, detail: str) -> None:
        skipped.setdefault(item.item_id, {"item_id": item.item_id, "video_id": item.video_id, "reason": reason,
                                          "detail": detail})
        progress.update(1)

    def keep(graded: list[dict], batch: Batch, method: str | None) -> None:
        """Records of this pass's method (all methods in the first round); own answers saved."""
        graded = [r for r in graded if method is None or r["method"] == method]
        if own:
            by_id = {p.item.item_id: p.item for p in batch.prompts}
            for r in graded:
                answers[(r["conversation"], r["method"])][r["turn"]] = own_answer(
                    by_id[r["item_id"]], r, settings.history_answer)
        records.extend(graded)
        progress.update(len(batch.prompts))

    jitted = scorer.jitted() if hasattr(scorer, "jitted") else {}
    compiled_before = {name: _cache_size(fn) for name, fn in jitted.items()}
    start = time.perf_counter()
    for k, method in passes:
        pending = None
        for batch in batches(plans[k], method):
            buckets[batch.shape_key] += 1
            for name, n in batch.token_counts().items():
                timing[name] += n
            dispatched = (batch, scorer.dispatch(batch))  # asynchronous: overlaps the next host batch
            if pending is not None:
                keep(_grade(*pending, scorer, tokenizer, settings, stops), pending[0], method)
            pending = dispatched
        if pending is not None:  # the next round's prompts need these answers
            keep(_grade(*pending, scorer, tokenizer, settings, stops), pending[0], method)
    chosen = {it.item_id for it in selected}
    records = [r for r in records if r["item_id"] in chosen]
    skipped = [s for s in skipped.values() if s["item_id"] in chosen]
    seconds = time.perf_counter() - start
    scored = len(selected) - len(skipped)
    skipped_by_reason = dict(sorted(collections.Counter(s["reason"] for s in skipped).items()))
    if not scored:
        raise NoUsableVideoError(
            f"eval: no item could be shown: all {len(selected)} selected items were skipped ("
            + ", ".join(f"{k} {v}" for k, v in skipped_by_reason.items())
            + f"); check the eval config field 'videos' ({video_root})")
    index = {it.item_id: i for i, it in enumerate(selected)}
    records.sort(key=lambda r: index[r["item_id"]])  # item order (stable: methods keep their order)
    meta = {
        "view": view, "items": scored, "skipped": skipped, "methods": list(settings.methods),
        # Whose answers earlier turns of a conversation showed: the model's own or the gold ones.
        "history": settings.history,
        # Questions asked: under own history, turns after the first once per method, and
        # earlier turns a task filter left out (their answers are history).
        "questions_asked": progress.done,
        # Items skipped per reason (decode reasons as training counts them, or short_clip), and
        # the videos behind them per reason.
        "skipped_by_reason": skipped_by_reason,
        "skipped_videos_by_reason": dict(sorted(collections.Counter(unusable_videos.values()).items())),
        "conversations": len({it.conversation for it in selected}),
        "videos": len({it.video_id for it in selected}),
        "new_tokens": shapes.new_tokens,
        # Compilations during this run, per jitted function: at most one per shape bucket.
        "compiles": {name: _cache_size(fn) - compiled_before[name] for name, fn in jitted.items()},
        "shape_buckets": [{"rows": k[0], "length": k[1], "slices": k[2], "batch": k[3], "view": k[4],
                           "scored_tokens": k[5], "batches": n} for k, n in sorted(buckets.items())],
        # Prompt tokens of the questions, tokens the prefill ran (each shared prefix once), and
        # with row padding.
        "tokens": {k: timing[k] for k in ("prompt_tokens", "row_tokens", "padded_row_tokens")},
        "seconds": seconds, "host_seconds": timing["host_s"], "questions_per_s": scored / max(seconds, 1e-9),
        "settings": dataclasses.asdict(settings),
    }
    metrics = compute_metrics(records, selected, bootstrap=settings.bootstrap, ci=settings.ci, seed=settings.seed)
    return EvalRun(records, metrics, meta)


def _cache_size(fn) -> int:
    """Entries in a jitted function's compilation cache (jax's PjitFunction)."""
    return fn._cache_size()


def _grade(batch: Batch, pending, scorer, tokenizer: Tokenizer, settings: EvalSettings,
           stops: tuple[int, ...]) -> list[dict]:
    out = scorer.fetch(pending)
    records = []
    for r, prompt in enumerate(batch.prompts):
        item = prompt.item
        generated = None
        if "tokens" in out and "generate" in settings.methods:
            # Multiple-choice answers get their own budget; a longer batch budget (for open
            # answers) only appends tokens, never changes earlier ones.
            budget = settings.max_new_tokens if item.options else settings.max_new_tokens_open
            tokens = [int(t) for t in out["tokens"][r][:budget]]
            end = next((i for i, t in enumerate(tokens) if t in stops), len(tokens))
            generated = grade_generation(item, tokenizer.decode(tokens[:end], skip_special_tokens=True))
            records.append(generated)
        if "loglik" in settings.methods:
            if item.options:
                records.append(grade_loglik(item, out["nll"][r]))
            elif generated is not None:  # open items can only be answered by generation
                records.append({**generated, "method": "loglik", "scored_by": "generate"})
    return records
