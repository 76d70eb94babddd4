"""Controls: does a model's accuracy come from the video's motion, from one frame, or from priors?

Each control re-scores the real run's items with the same prompts, batching and methods, only
the frames shown differ (`visuals.apply_view`): "static" holds each item's first shown frame for
as many frames (the scene, no motion); "blind" shows blank frames (no video at all: what answer
priors and the question's text reach). Per task, level and overall, and per scoring method:

    real, static, blind          accuracy with a bootstrap interval over resampled videos
    real - static                paired over the same (method, item_id) records, videos resampled
    uses motion                  "yes": real - static's interval above 0; "reversed": below 0;
                                 "no": it holds 0 (or "–" when there is no interval)

    OUT/controls/static/, OUT/controls/blind/   each control's run folder (report.write_run)
    OUT/controls.json, OUT/controls.md          the table above
    OUT/controls.png                            per task: bars for real / static / blind, chance

The real, static and blind statistics draw their resamples as metrics.py does (same seed and
statistic name), so "real" equals the real run's results.json to the last digit.
"""
from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sf2t_jax.eval import bootstrap
from sf2t_jax.eval.config import CONTROL_VIEWS, METHODS
from sf2t_jax.eval.report import TASK_LABELS, draw_bars, pyplot
from sf2t_jax.finevidbench.schema import FRAGMENT_TASKS, SCENE_TASKS

log = logging.getLogger(__name__)

LEVEL_LABELS = {"scene": "Scene level", "fragment": "Fragment level"}
NO_INTERVAL = "–"


def control_dir(out_dir: str | Path, view: str) -> Path:
    """The run folder of one control: OUT/controls/<view>/."""
    return Path(out_dir) / "controls" / view


def load_records(run_dir: str | Path) -> list[dict]:
    """An eval run folder's predictions.jsonl: one record per (item, method)."""
    with open(Path(run_dir) / "predictions.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def uses_motion(ci: Sequence[float | None]) -> str:
    """The verdict on real - static's interval [lo, hi]."""
    lo, hi = ci
    if lo is None or hi is None:
        return NO_INTERVAL
    if lo > 0:
        return "yes"
    if hi < 0:
        return "reversed"
    return "no"


def _rng(seed: int, name: str) -> np.random.Generator:
    """Seeded per statistic name like metrics.py's intervals (so real matches results.json)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _groups(records: Sequence[dict]) -> list[tuple[str, str, str]]:
    """(statistic name as metrics.py names it, kind, key) for the tasks, levels and overall present."""
    tasks = {r["task"] for r in records}
    levels = {r["level"] for r in records}
    return ([(f"task/{t}", "task", t) for t in SCENE_TASKS + FRAGMENT_TASKS if t in tasks]
            + [(f"level/{lv}", "level", lv) for lv in ("scene", "fragment") if lv in levels]
            + [("overall", "overall", "overall")])


def _member(record: dict, kind: str, key: str) -> bool:
    return kind == "overall" or record[kind] == key


def compare_views(records: Mapping[str, Sequence[dict]], chance: Mapping[str, Mapping[str, float]], *,
                  resamples: int, ci: float, seed: int) -> dict:
    """The controls table from each view's records.

    Args:
      records: {"real": records, "static": records, "blind": records} (metrics.py records; a
        control may be absent). Records are matched by (method, item_id).
      chance: {method: {task: expected accuracy of a uniform guess}} (results.json's metrics'
        "chance"); a level's or overall chance is the mean over its real records' tasks.
    Returns:
      {"views", "ci", "resamples", "methods": {method: [row, ...]}}, a row per task, level and
      overall: {"kind", "key", "chance", "n", "videos", <view>: {"value", "ci", "n", "videos"},
      "real_minus_static": paired_difference's dict, "uses_motion"}.
    """
    views = ["real", *(v for v in CONTROL_VIEWS if v in records)]
    by_view = {v: {(r["method"], r["item_id"]): r for r in records[v]} for v in views}
    methods = sorted({r["method"] for r in records["real"]}, key=lambda m: (METHODS + (m,)).index(m))
    table = {}
    for method in methods:
        real = [r for r in records["real"] if r["method"] == method]
        rows = []
        for name, kind, key in _groups(real):
            group = [r for r in real if _member(r, kind, key)]
            task_chance = chance.get(method, {})
            row = {"kind": kind, "key": key, "n": len(group), "videos": len({r["video_id"] for r in group}),
                   "chance": float(np.mean([task_chance.get(r["task"], 0.0) for r in group]))}
            for view in views:
                shown = [r for r in by_view[view].values() if r["method"] == method and _member(r, kind, key)]
                values = np.array([float(r["correct"]) for r in shown])
                row[view] = {"value": float(values.mean()) if len(values) else None, "n": len(values),
                             "videos": len({r["video_id"] for r in shown}),
                             "ci": bootstrap.interval(values, [r["video_id"] for r in shown], resamples=resamples,
                                                      ci=ci, rng=_rng(seed, f"{method}/{name}"))}
            if "static" in views:
                paired = [(r, by_view["static"][(method, r["item_id"])]) for r in group
                          if (method, r["item_id"]) in by_view["static"]]
                diff = bootstrap.paired_difference(
                    np.array([float(a["correct"]) for a, _ in paired]),
                    np.array([float(b["correct"]) for _, b in paired]), [a["video_id"] for a, _ in paired],
                    resamples=resamples, ci=ci, rng=_rng(seed, f"{method}/{name}/real-static"))
                row["real_minus_static"] = diff
                row["uses_motion"] = uses_motion(diff["ci"]) if diff["n"] else NO_INTERVAL
            rows.append(row)
        table[method] = rows
    return {"views": views, "ci": ci, "resamples": resamples, "methods": table}


# ----------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------
def row_label(row: dict) -> str:
    if row["kind"] == "task":
        return TASK_LABELS.get(row["key"], row["key"])
    return LEVEL_LABELS.get(row["key"], "Overall")


def _pct(stat: dict | None) -> str:
    if not stat or stat.get("value") is None:
        return "–"
    lo, hi = stat["ci"]
    return f"{100 * stat['value']:.1f}" + (f" [{100 * lo:.1f}, {100 * hi:.1f}]" if lo is not None else "")


def _signed(stat: dict | None) -> str:
    if not stat or stat.get("value") is None:
        return "–"
    lo, hi = stat["ci"]
    return f"{100 * stat['value']:+.1f}" + (f" [{100 * lo:+.1f}, {100 * hi:+.1f}]" if lo is not None else "")


def markdown(table: dict, name: str) -> str:
    """One table per scoring method: uses motion first, then real, the controls, real - static."""
    views = table["views"]
    level = round(100 * table["ci"])
    lines = [f"# Controls: {name}", "",
             f"Accuracy in % with {level}% bootstrap intervals over resampled videos. static: each item's first "
             "shown frame held for as many frames; blind: blank frames (no video). Uses motion: \"yes\" when "
             "the interval of real - static (paired by item, videos resampled) is above 0, \"reversed\" when "
             "below, \"no\" when it holds 0.", ""]
    for method, rows in table["methods"].items():
        headers = ["uses motion", method, *views, "real − static", "chance"]
        lines += [f"## {method}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for row in rows:
            label = row_label(row) if row["kind"] == "task" else f"**{row_label(row)}**"
            cells = [row.get("uses_motion", NO_INTERVAL), label, *(_pct(row[v]) for v in views),
                     _signed(row.get("real_minus_static")), f"{100 * row['chance']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def motion_markdown(tables: Mapping[str, dict]) -> str:
    """The "uses motion" table over several runs: one row per (setting, method), one column per
    task (then levels, overall), each cell real - static [CI] and the verdict."""
    columns = []
    for table in tables.values():
        for rows in table["methods"].values():
            columns += [(r["kind"], r["key"], row_label(r)) for r in rows if (r["kind"], r["key"], row_label(r))
                        not in columns]
    order = {"task": 0, "level": 1, "overall": 2}
    columns.sort(key=lambda c: order[c[0]])  # stable: tasks in benchmark order, then levels, overall
    level = round(100 * next(iter(tables.values()))["ci"]) if tables else 95
    lines = ["## Does a model use the video's motion?", "",
             f"Real minus static accuracy in points (each item's first shown frame held still), {level}% interval "
             'over resampled videos, paired by item; "yes": above 0, "reversed": below 0, "no": holds 0. '
             "Per setting: eval/<stage>/controls.md (real, static, blind).", "",
             "| setting | scoring | " + " | ".join(c[2] for c in columns) + " |", "|" + "---|" * (len(columns) + 2)]
    for setting, table in tables.items():
        for method, rows in table["methods"].items():
            by_key = {(r["kind"], r["key"]): r for r in rows}
            cells = []
            for kind, key, _ in columns:
                row = by_key.get((kind, key))
                diff = row and row.get("real_minus_static")
                cells.append(f"{_signed(diff)} {row.get('uses_motion', NO_INTERVAL)}" if diff else "–")
            lines.append(f"| {setting} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n"


def plot(table: dict, path: str | Path, name: str) -> None:
    """Per task: real / static / blind bars with intervals, chance dotted; one panel per method."""
    plt = pyplot()
    methods = list(table["methods"])
    fig, axes = plt.subplots(len(methods), 1, figsize=(12, 3.6 * len(methods)), squeeze=False)
    for ax, method in zip(axes[:, 0], methods):
        rows = [r for r in table["methods"][method] if r["kind"] != "level"]
        draw_bars(ax, [row_label(r) for r in rows], [(v, [r[v] for r in rows]) for v in table["views"]],
                  [r["chance"] for r in rows], f"{name}: real vs controls ({method}); dotted: chance")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out_dir: str | Path, name: str, records: Mapping[str, Sequence[dict]],
                 chance: Mapping[str, Mapping[str, float]], *, resamples: int, ci: float, seed: int) -> dict:
    """controls.json, controls.md and controls.png in `out_dir`; returns the table."""
    table = compare_views(records, chance, resamples=resamples, ci=ci, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "controls.json").write_text(json.dumps({"name": name, **table}, indent=1, allow_nan=False))
    (out / "controls.md").write_text(markdown(table, name))
    plot(table, out / "controls.png", name)
    return table


def report_from_dirs(out_dir: str | Path, name: str, views: Sequence[str], *, resamples: int, ci: float,
                     seed: int) -> dict:
    """`write_report` over finished run folders: OUT (real) and OUT/controls/<view>/."""
    records = {"real": load_records(out_dir), **{v: load_records(control_dir(out_dir, v)) for v in views}}
    results = json.loads((Path(out_dir) / "results.json").read_text())
    chance = {m: metrics.get("chance", {}) for m, metrics in results["metrics"].items()}
    return write_report(out_dir, name, records, chance, resamples=resamples, ci=ci, seed=seed)


def log_table(table: dict, prefix: str = "controls") -> None:
    """One line per task (and level, overall) and method: real / static / blind and the verdict."""
    for method, rows in table["methods"].items():
        for row in rows:
            views = ", ".join(f"{v} {_pct({'value': row[v]['value'], 'ci': [None, None]})}"
                              for v in table["views"])
            diff = row.get("real_minus_static")
            log.info("%s %s %s: %s; real-static %s -> uses motion: %s", prefix, method, row_label(row), views,
                     _signed(diff), row.get("uses_motion", NO_INTERVAL))
