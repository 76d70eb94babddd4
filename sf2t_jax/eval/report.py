"""Reports: results.json, predictions.jsonl, a markdown table, and two figures.

    OUT/results.json      {"name", "meta", "metrics": {method: ...}}  (metrics.py)
    OUT/predictions.jsonl one record per (item, method)
    OUT/results.md        the table below, one column per method
    OUT/tasks.png         accuracy per task, one bar per run, chance marked (paper Figure 1)
    OUT/speed.png         accuracy per playback speed, one line per run (paper Figure 4)

`compare(run_dirs, out)` puts several runs (Base, SFT, SF²T, ...) in one table and the same
two figures. Numbers are percentages with their 95% bootstrap interval over resampled videos.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sf2t_jax.finevidbench.schema import FRAGMENT_TASKS, SCENE_TASKS, SPEEDS

SPEED_LABELS = {"x0.5": "x0.5 (slow)", "x1": "x1 (normal)", "x2": "x2 (fast)", "x4": "x4 (fast)",
                "static": "static"}
TASK_LABELS = {"action": "Action", "effect": "Effect", "speed": "Speed", "frame_count": "Frame count",
               "meaning_of_order": "Meaning of order", "frame_comparison": "Frame comparison",
               "adjust_or_not": "Adjust or not", "rearrangement": "Rearrangement"}


def _rows(metrics: dict) -> list[tuple[str, str, dict | None]]:
    """(section, label, statistic) rows of one method's metrics, in table order."""
    get = lambda *path: _dig(metrics, path)
    rows = [("Scene", TASK_LABELS[t], get("tasks", t)) for t in SCENE_TASKS]
    rows += [("Scene", f"Action: {c.replace('_', '-')}", get("category", "action", c))
             for c in ("distinctive", "non_typical", "slight")]
    rows += [("Scene", "Speed, balanced per class", get("speed_balanced"))]
    rows += [("Scene", f"Speed @ {SPEED_LABELS[s]}", get("speed", "speed", s)) for s in SPEEDS]
    rows += [("Scene", f"Action+Effect @ {s}", get("speed", "action+effect", s)) for s in SPEEDS if s != "static"]
    rows += [("Fragment", TASK_LABELS[t], get("tasks", t)) for t in FRAGMENT_TASKS]
    rows += [("Fragment", "Rearrangement Kendall tau", get("kendall_tau")),
             ("Fragment", "Chain (all steps right)", get("chain")),
             ("All", "Scene level", get("levels", "scene")), ("All", "Fragment level", get("levels", "fragment")),
             ("All", "Overall", get("overall")), ("All", "Unparsable", get("unparsable", "overall"))]
    return rows


def _dig(d, path):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _cell(stat: dict | None, label: str) -> str:
    if not stat or stat.get("value") is None:
        return "–"
    lo, hi = stat["ci"]
    if "tau" in label:
        return f"{stat['value']:+.2f}" + (f" [{lo:+.2f}, {hi:+.2f}]" if lo is not None else "")
    if lo is None:
        return f"{100 * stat['value']:.1f}"
    return f"{100 * stat['value']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def markdown_table(columns: Sequence[tuple[str, dict]]) -> str:
    """One row per statistic, one column per (header, metrics of one method)."""
    if not columns:
        return ""
    headers = ["", *(h for h, _ in columns)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    per_column = [_rows(m) for _, m in columns]
    section = None
    for i, (sec, label, _) in enumerate(per_column[0]):
        cells = [_cell(rows[i][2], label) for rows in per_column]
        if all(c == "–" for c in cells):
            continue
        if sec != section:
            section = sec
            lines.append(f"| **{sec}** |" + " |" * len(columns))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _columns(runs: Sequence[tuple[str, dict]]) -> list[tuple[str, dict]]:
    many = len(runs) > 1
    return [(f"{name} · {method}" if many else method, m)
            for name, results in runs for method, m in results["metrics"].items()]


def _header(runs: Sequence[tuple[str, dict]]) -> str:
    lines = ["Accuracy in % with 95% bootstrap intervals (videos resampled); Kendall tau in [-1, 1] (unparsable = -1).",
             "loglik: argmin of the options' mean NLL; generate: greedy answer, then extraction "
             "(unparsable = wrong). Open items (rearrangement) are always answered by generation.", ""]
    for name, r in runs:
        meta = r["meta"]
        history = {"own": "the model's own earlier answers", "gold": "the gold earlier answers",
                   "none": "none (each turn asked alone)"}.get(
            meta.get("history"), "not recorded")
        lines.append(f"- **{name}**: {meta['items']} items, {meta['videos']} videos, "
                     f"{meta['conversations']} conversations, {_skipped(meta)}, "
                     f"{meta['questions_per_s']:.1f} questions/s; conversation history: {history}")
    return "\n".join(lines) + "\n\n"


def _skipped(meta: dict) -> str:
    """'3 skipped' or '3 skipped (corrupt 2, missing 1)' (runs written before reasons were kept
    have only the list)."""
    by_reason = meta.get("skipped_by_reason") or {}
    reasons = f" ({', '.join(f'{k} {v}' for k, v in by_reason.items())})" if by_reason else ""
    return f"{len(meta['skipped'])} skipped{reasons}"


# ----------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------
def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a TPU VM
    import matplotlib.pyplot as plt

    return plt


def _methods(runs) -> list[str]:
    return list(dict.fromkeys(m for _, r in runs for m in r["metrics"]))


def draw_bars(ax, labels: Sequence[str], series: Sequence[tuple[str, Sequence[dict | None]]],
              chance: Sequence[float | None], title: str) -> None:
    """Grouped bars on one axis: a group per label, one bar per series (name, one statistic per
    label, {"value", "ci"} as fractions or None), CI whiskers, chance as a dotted tick."""
    x = np.arange(len(labels))
    width = 0.8 / max(len(series), 1)
    for j, (name, stats) in enumerate(series):
        vals = np.array([100 * s["value"] if s and s["value"] is not None else np.nan for s in stats])
        err = np.array([[100 * (s["value"] - s["ci"][0]), 100 * (s["ci"][1] - s["value"])]
                        if s and s["value"] is not None and s["ci"][0] is not None else [0, 0] for s in stats]).T
        ax.bar(x + (j - (len(series) - 1) / 2) * width, vals, width, yerr=err, capsize=2, label=name)
    for i, p in enumerate(chance):
        if p:
            ax.hlines(100 * p, i - 0.45, i + 0.45, colors="k", linestyles=":", linewidth=1)
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=min(len(series), 4))


def plot_tasks(runs: Sequence[tuple[str, dict]], path: str | Path) -> None:
    """Grouped bars: tasks (and chain) on x, one bar per run, CI whiskers, chance ticks."""
    plt = pyplot()
    methods = _methods(runs)
    keys = [t for t in SCENE_TASKS + FRAGMENT_TASKS] + ["chain"]
    fig, axes = plt.subplots(len(methods), 1, figsize=(12, 3.6 * len(methods)), squeeze=False)
    for ax, method in zip(axes[:, 0], methods):
        series = []
        for name, r in runs:
            m = r["metrics"].get(method, {})
            series.append((name, [m.get("chain") if k == "chain" else _dig(m, ("tasks", k)) for k in keys]))
        chance = runs[0][1]["metrics"].get(method, {}).get("chance", {})
        draw_bars(ax, [TASK_LABELS.get(k, "Chain") for k in keys], series, [chance.get(k) for k in keys],
                  f"FineVidBench per task ({method}); dotted: chance")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_speed(runs: Sequence[tuple[str, dict]], path: str | Path) -> None:
    """Accuracy per playback speed: the Speed task, and Action+Effect; one line per run."""
    plt = pyplot()
    methods = _methods(runs)
    pools = (("speed", "Speed task"), ("action+effect", "Action + Effect"))
    fig, axes = plt.subplots(len(methods), len(pools), figsize=(11, 3.4 * len(methods)), squeeze=False)
    for row, method in enumerate(methods):
        for col, (pool, title) in enumerate(pools):
            ax = axes[row, col]
            for name, r in runs:
                per = _dig(r["metrics"].get(method, {}), ("speed", pool)) or {}
                speeds = [s for s in SPEEDS if s in per and per[s]["value"] is not None]
                if not speeds:
                    continue
                x = [SPEEDS.index(s) for s in speeds]
                y = [100 * per[s]["value"] for s in speeds]
                ax.plot(x, y, marker="o", label=name)
                if all(per[s]["ci"][0] is not None for s in speeds):
                    ax.fill_between(x, [100 * per[s]["ci"][0] for s in speeds],
                                    [100 * per[s]["ci"][1] for s in speeds], alpha=0.15)
            ax.set_xticks(range(len(SPEEDS)), [SPEED_LABELS[s] for s in SPEEDS], fontsize=8)
            ax.set_ylim(0, 100)
            ax.set_ylabel("accuracy (%)")
            ax.set_title(f"{title} per speed ({method})")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------
def write_run(run, out_dir: str | Path, name: str, extra_meta: dict | None = None) -> Path:
    """Writes one run's files (module docstring) into `out_dir`; returns results.json's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {"name": name, "meta": {**run.meta, **(extra_meta or {})}, "metrics": run.metrics}
    (out / "results.json").write_text(json.dumps(_clean(results), indent=1, allow_nan=False))
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for r in run.records:
            f.write(json.dumps(_clean(r), ensure_ascii=False, allow_nan=False) + "\n")
    runs = [(name, results)]
    (out / "results.md").write_text(f"# FineVidBench: {name}\n\n" + _header(runs) + markdown_table(_columns(runs)))
    plot_tasks(runs, out / "tasks.png")
    plot_speed(runs, out / "speed.png")
    return out / "results.json"


def _clean(x):
    """JSON-safe: numpy scalars and arrays to Python, non-finite floats (an empty option's
    infinite NLL) to null."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    return x


def load_results(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no results.json (is it an eval output directory?)")
    return json.loads(path.read_text())


def compare(run_dirs: Sequence[str | Path], out_dir: str | Path, names: Sequence[str] | None = None, *,
            preamble: str = "") -> Path:
    """One table (comparison.md) and the two figures over several runs; returns the table path.
    preamble: markdown placed first, under the title (e.g. the demo's "uses motion" table)."""
    results = [load_results(d) for d in run_dirs]
    names = list(names) if names else [r.get("name") or Path(d).name for r, d in zip(results, run_dirs)]
    if len(set(names)) != len(names):
        raise ValueError(f"compare: run names repeat ({names}); give distinct directories or names")
    runs = list(zip(names, results))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text("# FineVidBench comparison\n\n" + preamble + _header(runs)
                                       + markdown_table(_columns(runs)))
    plot_tasks(runs, out / "tasks.png")
    plot_speed(runs, out / "speed.png")
    return out / "comparison.md"
