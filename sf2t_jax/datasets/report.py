"""Human-readable reports: benchmark statistics and skipped records, as printed by prepare."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _counts(d: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"


def format_benchmark_stats(stats: Mapping[str, Any]) -> str:
    """``finevidbench.benchmark_stats`` as a short table."""
    letters = "  ".join(f"{k} {v:.1%}" for k, v in stats["letters_4way"].items())
    return "\n".join([
        f"FineVidBench: {stats['items']} items over {stats['videos']} videos "
        f"({stats['items_per_video']:.1f} per video)",
        f"  tasks          {_counts(stats['tasks'])}",
        f"  answer letters {letters}  (4-option items)",
        f"  categories     {_counts(stats['categories'])}  (action items)",
        f"  speeds         {_counts(stats['speeds'])}  (speed items)",
        f"  conversations  {stats['conversations']} fragment sets, "
        f"{stats['shuffled_fraction']:.0%} shuffled",
    ])


def format_problems(problems: Mapping[str, Sequence[tuple[str, str, str]]],
                    limit: int = 5) -> str:
    """Skipped records by reason, each with up to ``limit`` examples (split/id: detail)."""
    lines = [f"skipped records: {_counts({k: len(v) for k, v in problems.items()})}"]
    for reason, rows in problems.items():
        if rows:
            shown = "; ".join(f"{s}/{i}: {d}" for s, i, d in rows[:limit])
            more = f" (and {len(rows) - limit} more)" if len(rows) > limit else ""
            lines.append(f"  {reason}: {shown}{more}")
    return "\n".join(lines)
