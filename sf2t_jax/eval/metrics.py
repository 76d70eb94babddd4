"""Grading one answer, and the benchmark's metrics with seeded bootstrap confidence intervals.

A record is one (item, method) outcome, a flat JSON-able dict:
  item_id video_id conversation turn level task speed category   from the item
  method        "loglik" | "generate"
  correct       bool; an unparsable answer is False
  parsed        bool; always True for loglik (an argmin is always an answer)
  pred, gold    letter (multiple choice) or list of positions (rearrangement)
  reason        the extraction rule that decided (generate), or "argmin"
  text          the generated answer (generate); nll: per-option mean NLL (loglik)
  tau           Kendall's tau of the predicted order (rearrangement; -1 when unparsable)
  scored_by     the method that produced it ("generate" for open items under loglik)

Every statistic is {"value", "ci": [lo, hi], "n", "videos"}: the mean over its units (items;
conversations for chain accuracy) and a percentile bootstrap interval that resamples videos
(`eval/bootstrap.py`: a video's items rise and fall together), seeded per statistic name so
that adding a metric never moves another's interval.
"""
from __future__ import annotations

import collections
import zlib
from collections.abc import Iterable, Sequence

import numpy as np

from sf2t_jax.eval import bootstrap, extract
from sf2t_jax.eval.config import METHODS
from sf2t_jax.finevidbench.schema import FRAGMENT_TASKS, LETTERS, SCENE_TASKS, SPEED_ANSWERS, SPEEDS, Item

# Unparsable rearrangements get the worst tau: refusing to answer must not beat a wrong order.
UNPARSABLE_TAU = -1.0


def _base(item: Item, method: str) -> dict:
    return dict(item_id=item.item_id, video_id=item.video_id, conversation=item.conversation,
                turn=item.turn, level=item.level, task=item.task, speed=item.speed,
                category=item.category, method=method, scored_by=method)


def grade_loglik(item: Item, nll: Sequence[float]) -> dict:
    """Multiple choice by argmin of the options' mean NLL."""
    nll = [float(v) for v in nll[:len(item.options)]]
    pred = LETTERS[int(np.argmin(nll))]
    return {**_base(item, "loglik"), "correct": pred == item.answer, "parsed": True, "pred": pred,
            "gold": item.answer, "reason": "argmin", "nll": nll}


def grade_generation(item: Item, text: str) -> dict:
    """Extracts the answer from generated text and grades it; unparsable is wrong."""
    record = {**_base(item, "generate"), "text": text}
    if item.options:
        got = extract.choice(text, item.options)
        return {**record, "correct": got.value == item.answer, "parsed": got.parsed, "pred": got.value,
                "gold": item.answer, "reason": got.reason}
    if item.task != "rearrangement":
        raise ValueError(f"item {item.item_id}: no grader for open task {item.task!r}")
    gold = list(item.order)
    got = extract.permutation(text, len(gold))
    pred = list(got.value) if got.parsed else None
    return {**record, "correct": pred == gold, "parsed": got.parsed, "pred": pred, "gold": gold,
            "reason": got.reason, "tau": kendall_tau(pred, gold) if got.parsed else UNPARSABLE_TAU}


def kendall_tau(pred: Sequence[int], gold: Sequence[int]) -> float:
    """Kendall's tau between two orderings of the same items (no ties): 1 equal, -1 reversed."""
    if sorted(pred) != sorted(gold) or len(set(gold)) != len(gold):
        raise ValueError(f"kendall_tau needs two orderings of the same items, got {pred} and {gold}")
    n = len(gold)
    if n < 2:
        return 1.0
    rank = {v: i for i, v in enumerate(pred)}
    r = np.array([rank[v] for v in gold])  # predicted rank of each item, in gold order
    sign = np.sign(r[None, :] - r[:, None])[np.triu_indices(n, 1)]
    return float(sign.sum() / (n * (n - 1) / 2))


# ----------------------------------------------------------------------------------------
# Bootstrap
# ----------------------------------------------------------------------------------------
def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


class _Stats:
    def __init__(self, resamples: int, ci: float, seed: int):
        self.resamples, self.ci, self.seed = resamples, ci, seed

    def __call__(self, name: str, values: Iterable[float], videos: Sequence[str]) -> dict:
        """Mean of `values` with its interval over resampled videos (`videos[i]` holds value i)."""
        values = np.asarray(list(values), np.float64)
        if len(values) == 0:
            return {"value": None, "ci": [None, None], "n": 0, "videos": 0}
        lo, hi = bootstrap.interval(values, list(videos), resamples=self.resamples, ci=self.ci,
                                    rng=_rng(self.seed, name))
        return {"value": float(values.mean()), "ci": [lo, hi], "n": int(len(values)), "videos": len(set(videos))}


# ----------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------
def compute_metrics(records: Sequence[dict], items: Sequence[Item], *, bootstrap: int = 1000,
                    ci: float = 0.95, seed: int = 0) -> dict:
    """{method: metrics} over `records`; `items` gives each task's chance level.

    Per method: overall, levels (scene / fragment), tasks, speed ({task: {speed}} for scene
    tasks, plus "action+effect" and "scene" pooled), category ({task: {category}}), steps
    ({turn}), chain (every scored turn of a conversation right), speed_balanced (Speed's mean
    accuracy per gold answer, with "classes": {answer: accuracy}), kendall_tau (rearrangement,
    unparsable = -1; also over parsed answers only), unparsable (rate overall and per task),
    chance (expected accuracy of a uniform guess per task, for plots and sanity checks).
    """
    stats = _Stats(bootstrap, ci, seed)
    chance = _chance(items)
    by_method: dict[str, list[dict]] = collections.defaultdict(list)
    for r in records:
        by_method[r["method"]].append(r)
    order = sorted(by_method, key=lambda m: (m not in METHODS, METHODS.index(m) if m in METHODS else 0, m))
    return {m: _method_metrics(m, by_method[m], stats, chance) for m in order}


def _chance(items: Sequence[Item]) -> dict[str, float]:
    per_task = collections.defaultdict(list)
    for it in items:
        per_task[it.task].append(1.0 / len(it.options) if it.options else 0.0)
    return {t: float(np.mean(v)) for t, v in per_task.items()}


def _method_metrics(method: str, rs: list[dict], stats: _Stats, chance: dict) -> dict:
    def acc(name, subset):
        return stats(f"{method}/{name}", [float(r["correct"]) for r in subset], [r["video_id"] for r in subset])

    def where(**conds):
        return [r for r in rs if all(r[k] == v for k, v in conds.items())]

    tasks = [t for t in SCENE_TASKS + FRAGMENT_TASKS if where(task=t)]
    speed_items = where(task="speed")
    out = {
        "n": len(rs),
        "overall": acc("overall", rs),
        "levels": {lv: acc(f"level/{lv}", where(level=lv)) for lv in ("scene", "fragment") if where(level=lv)},
        "tasks": {t: acc(f"task/{t}", where(task=t)) for t in tasks},
        "chance": {t: chance.get(t, 0.0) for t in tasks},
    }
    speed = {}
    pools = {t: [t] for t in SCENE_TASKS} | {"action+effect": ["action", "effect"], "scene": list(SCENE_TASKS)}
    for name, pool in pools.items():
        per = {s: acc(f"speed/{name}/{s}", [r for r in rs if r["task"] in pool and r["speed"] == s])
               for s in SPEEDS}
        per = {s: v for s, v in per.items() if v["n"]}
        if per:
            speed[name] = per
    out["speed"] = speed
    if speed_items:
        # Speed's gold answers need not be balanced (x2 and x4 are both "fast"): the mean of the
        # per-gold-answer accuracies is what a constant answer cannot inflate
        out["speed_balanced"] = {**bootstrap.balanced_mean(
            [float(r["correct"]) for r in speed_items], [SPEED_ANSWERS[r["speed"]] for r in speed_items],
            [r["video_id"] for r in speed_items], resamples=stats.resamples, ci=stats.ci,
            rng=_rng(stats.seed, f"{method}/speed_balanced")),
            "n": len(speed_items), "videos": len({r["video_id"] for r in speed_items})}
    categories = sorted({r["category"] for r in rs})
    out["category"] = {t: {c: acc(f"category/{t}/{c}", where(task=t, category=c))
                           for c in categories if where(task=t, category=c)} for t in tasks}
    fragment = where(level="fragment")
    out["steps"] = {str(n): acc(f"step/{n}", [r for r in fragment if r["turn"] == n])
                    for n in sorted({r["turn"] for r in fragment})}
    if fragment:
        chains, chain_video = collections.defaultdict(list), {}
        for r in fragment:
            chains[r["conversation"]].append(r["correct"])
            chain_video[r["conversation"]] = r["video_id"]
        out["chain"] = stats(f"{method}/chain", [float(all(v)) for v in chains.values()],
                             [chain_video[c] for c in chains])
    rearr = where(task="rearrangement")
    if rearr:
        parsed = [r for r in rearr if r["parsed"]]
        out["kendall_tau"] = {**stats(f"{method}/tau", [r["tau"] for r in rearr], [r["video_id"] for r in rearr]),
                              "parsed": stats(f"{method}/tau_parsed", [r["tau"] for r in parsed],
                                              [r["video_id"] for r in parsed])}

    def unparsable(name, subset):
        return stats(name, [float(not r["parsed"]) for r in subset], [r["video_id"] for r in subset])

    out["unparsable"] = {"overall": unparsable(f"{method}/unparsable", rs),
                         "tasks": {t: unparsable(f"{method}/unparsable/{t}", where(task=t)) for t in tasks}}
    return out


def summary(metrics: dict, prefix: str = "eval") -> dict[str, float]:
    """Flat scalars for a training log: {"eval/loglik/action": 0.41, ...}."""
    flat = {}
    for method, m in metrics.items():
        base = f"{prefix}/{method}"
        flat[f"{base}/overall"] = m["overall"]["value"]
        for t, s in m["tasks"].items():
            flat[f"{base}/{t}"] = s["value"]
        if "chain" in m:
            flat[f"{base}/chain"] = m["chain"]["value"]
        if "speed_balanced" in m:
            flat[f"{base}/speed_balanced"] = m["speed_balanced"]["value"]
        if "kendall_tau" in m:
            flat[f"{base}/kendall_tau"] = m["kendall_tau"]["value"]
        flat[f"{base}/unparsable"] = m["unparsable"]["overall"]["value"]
    return {k: v for k, v in flat.items() if v is not None}
