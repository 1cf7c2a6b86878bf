"""Scenario results: one JSON line each, ratios to python_limit, and the closing human table."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

RATE_SUFFIX = "msgs_per_s"
RATIO_SUFFIX = "vs_python_limit"

Figure = float | int | str | list[float | None] | list[int | None] | None


@dataclass(slots=True)
class Result:
    name: str
    figures: dict[str, Figure]
    params: dict[str, Any]
    headline: list[str] = field(default_factory=list)  # figures shown in the table (all when empty)

    def json_line(self) -> str:
        """Strict JSON: a figure that could not be measured (NaN) is null."""
        figures = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in self.figures.items()}
        line = {"name": self.name, "figures": figures, "params": self.params}
        return json.dumps(line, separators=(",", ":"), allow_nan=False, default=str)


def percentile(values: Sequence[float], q: float) -> float | None:
    """q-th percentile (0-100) with linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def latency_figures(
    prefix: str, seconds: Sequence[float], quantiles: Sequence[int] = (50, 95, 99)
) -> dict[str, Figure]:
    """{prefix_p50_ms: .., prefix_p95_ms: .., ...} from latencies in seconds."""
    return {f"{prefix}_p{q}_ms": ms(percentile(seconds, q)) for q in quantiles}


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("nan")


def ratio_key(key: str) -> str:
    """'msgs_per_s' -> 'vs_python_limit', 'ingest_msgs_per_s' -> 'ingest_vs_python_limit'."""
    base = key[: -len(RATE_SUFFIX)].rstrip("_")
    return f"{base}_{RATIO_SUFFIX}" if base else RATIO_SUFFIX


def add_ratios(result: Result, python_limit: float | None) -> None:
    """Next to every messages/s figure, the same figure as a fraction of the python_limit rate."""
    if not python_limit:
        return
    for key, value in list(result.figures.items()):
        if key.endswith(RATE_SUFFIX) and isinstance(value, int | float):
            result.figures[ratio_key(key)] = round(value / python_limit, 3)


def _shown(value: Figure) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):  # a few values (one per replica) inline, long series as a count
        return " / ".join(_shown(v) for v in value) if len(value) <= 4 else f"[{len(value)} values]"
    return str(value)


def table(results: Sequence[Result]) -> str:
    """Fixed-width table: scenario, figure, value, and the ratio to python_limit where there is one."""
    rows = [("scenario", "figure", "value", "vs python_limit")]
    for result in results:
        keys = result.headline or [k for k in result.figures if not k.endswith(RATIO_SUFFIX)]
        for key in keys:
            if key not in result.figures:
                continue
            ratio = result.figures.get(ratio_key(key)) if key.endswith(RATE_SUFFIX) else None
            rows.append((result.name, key, _shown(result.figures[key]), "" if ratio is None else f"{ratio:.3f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for n, row in enumerate(rows):
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]:>{widths[3]}}")
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
