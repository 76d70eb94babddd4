"""The paper's three claims, checked on the demo's predictions with paired bootstrap CIs.

    claims = check_claims({"Base": dir, "SFT": dir, ...}, bootstrap=1000, seed=0)

A claim "A beats B at level L" compares the two runs on the same benchmark items: the
difference of their accuracies over L's items, with a percentile bootstrap that resamples
videos, both runs' answers to every item of a drawn video together (paired, and clustered:
a video's items are not independent; `eval/bootstrap.py`). Verdict: "yes" when the interval
is above 0, "reversed" when below, else "no significant difference". Each claim is its own
95% interval; with five claims x two scoring methods, about one in twenty intervals misses
by chance, so a single "yes" among many is weak evidence (no multiplicity correction).
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from sf2t_jax.eval.bootstrap import paired_difference

# (claim, better run, worse run, benchmark level or "overall")
CLAIMS = (
    ("SF²T beats Base at fragment level", "SF²T", "Base", "fragment"),
    ("SF²T beats Base at scene level", "SF²T", "Base", "scene"),
    ("SFT+SF²T beats SFT at fragment level", "SFT+SF²T", "SFT", "fragment"),
    ("SFT+SF²T beats SFT at scene level", "SFT+SF²T", "SFT", "scene"),
    ("SFT+SF²T beats SFT overall", "SFT+SF²T", "SFT", "overall"),
)


def load_predictions(run_dir: str | Path) -> dict[tuple[str, str, str], tuple[bool, str]]:
    """{(method, item_id, level): (correct, video_id)} from an eval run's predictions.jsonl."""
    out = {}
    with open(Path(run_dir) / "predictions.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            out[(r["method"], r["item_id"], r["level"])] = (bool(r["correct"]), r["video_id"])
    return out


def verdict(diff: dict) -> str:
    lo, hi = diff["ci"]
    if lo is not None and lo > 0:
        return "yes"
    if hi is not None and hi < 0:
        return "reversed"
    return "no significant difference"


def check_claims(run_dirs: dict[str, str | Path], *, methods=("loglik", "generate"), bootstrap: int = 1000,
                 ci: float = 0.95, seed: int = 0) -> list[dict]:
    """One record per (claim, scoring method): both accuracies, the paired difference, a verdict."""
    predictions = {name: load_predictions(d) for name, d in run_dirs.items()}
    results = []
    for claim, better, worse, level in CLAIMS:
        if better not in predictions or worse not in predictions:
            continue
        for method in methods:
            keys = sorted(k for k in predictions[better] if k[0] == method and (level == "overall" or k[2] == level))
            missing = [k for k in keys if k not in predictions[worse]]
            if missing:
                raise ValueError(f"claims: {worse} lacks {len(missing)} items that {better} answered, "
                                 f"e.g. {missing[0]}")
            if not keys:
                continue
            a = np.array([predictions[better][k][0] for k in keys])
            b = np.array([predictions[worse][k][0] for k in keys])
            videos = [predictions[better][k][1] for k in keys]
            rng = np.random.default_rng(seed + zlib.crc32(f"{claim}/{method}".encode()))
            diff = paired_difference(a, b, videos, resamples=bootstrap, ci=ci, rng=rng)
            results.append({"claim": claim, "method": method, "level": level, "better": better, "worse": worse,
                            "accuracy": {better: float(a.mean()), worse: float(b.mean())},
                            "difference": diff, "verdict": verdict(diff)})
    return results


def claims_markdown(claims: list[dict]) -> str:
    lines = ["| claim | scoring | accuracy (first) | accuracy (second) | difference [95% CI] | verdict |",
             "|---|---|---|---|---|---|"]
    for c in claims:
        d = c["difference"]
        lo, hi = d["ci"]
        interval = f" [{100 * lo:+.1f}, {100 * hi:+.1f}]" if lo is not None else ""
        lines.append(f"| {c['claim']} | {c['method']} | {c['better']} {100 * c['accuracy'][c['better']]:.1f} | "
                     f"{c['worse']} {100 * c['accuracy'][c['worse']]:.1f} | {100 * d['value']:+.1f}{interval} "
                     f"(n={d['n']}, {d['clusters']} videos) | {c['verdict']} |")
    return "\n".join(lines) + "\n"
