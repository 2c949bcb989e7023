"""Latency figures of the benchmarks: one percentile, one definition."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile of already sorted values, to 0.1; None for no values.

    Nearest rank: the value at 1-based rank ceil(p / 100 * n), the smallest
    measured value with at least p% of the values at or below it. So p50 of
    [1, 2, 3, 4, 5] is 3, p95 of 30 values is the 29th, p100 is the maximum,
    and every figure is one that was measured, not interpolated.
    """
    if not ordered:
        return None
    if not 0 <= p <= 100:
        raise ValueError(f"a percentile is between 0 and 100, not {p}")
    # p * n first: exact for whole p, where p / 100 * n could land just above a whole rank and skip one.
    rank = max(1, math.ceil(p * len(ordered) / 100))
    return round(ordered[rank - 1], 1)


def latency_summary(values: Iterable[float], points: Iterable[int] = (50, 95, 99)) -> dict[str, float | None]:
    """{"p50": ..., "p95": ...} of ``values`` (sorted here) by ``percentile``; point 100 is named "max"."""
    ordered = sorted(values)
    return {("max" if p == 100 else f"p{p}"): percentile(ordered, p) for p in points}
