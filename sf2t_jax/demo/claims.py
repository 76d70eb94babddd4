"""The paper's three claims, checked on the demo's predictions with paired bootstrap CIs.

    claims = check_claims({"Base": dir, "SFT": dir, ...}, bootstrap=1000, seed=0)

A claim "A beats B at level L" compares the two runs on the same benchmark items: the
difference of their accuracies over L's items, with a percentile bootstrap over items that
resamples both runs' answers to an item together (a paired test, tighter than comparing two
separate CIs). Verdict: "yes" when the interval is above 0, "reversed" when below, else
"no significant difference".
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

# (claim, better run, worse run, benchmark level or "overall")
CLAIMS = (
    ("SF²T beats Base at fragment level", "SF²T", "Base", "fragment"),
    ("SF²T beats Base at scene level", "SF²T", "Base", "scene"),
    ("SFT+SF²T beats SFT at fragment level", "SFT+SF²T", "SFT", "fragment"),
    ("SFT+SF²T beats SFT at scene level", "SFT+SF²T", "SFT", "scene"),
    ("SFT+SF²T beats SFT overall", "SFT+SF²T", "SFT", "overall"),
)


def load_predictions(run_dir: str | Path) -> dict[tuple[str, str, str], bool]:
    """{(method, item_id, level): correct} from an eval run's predictions.jsonl."""
    out = {}
    with open(Path(run_dir) / "predictions.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            out[(r["method"], r["item_id"], r["level"])] = bool(r["correct"])
    return out


def paired_difference(a: np.ndarray, b: np.ndarray, *, bootstrap: int, ci: float, seed: int) -> dict:
    """Mean of a - b (per-item correctness, 0/1) and its percentile bootstrap interval."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    out = {"value": float(diff.mean()), "n": int(diff.size), "ci": [None, None]}
    if bootstrap and diff.size:
        rng = np.random.default_rng(seed)
        means = diff[rng.integers(0, diff.size, size=(bootstrap, diff.size))].mean(axis=1)
        alpha = (1.0 - ci) / 2
        out["ci"] = [float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))]
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
            a = np.array([predictions[better][k] for k in keys])
            b = np.array([predictions[worse][k] for k in keys])
            diff = paired_difference(a, b, bootstrap=bootstrap, ci=ci,
                                     seed=seed + zlib.crc32(f"{claim}/{method}".encode()))
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
                     f"(n={d['n']}) | {c['verdict']} |")
    return "\n".join(lines) + "\n"
