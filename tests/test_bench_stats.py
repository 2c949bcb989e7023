"""The benchmarks' percentile: nearest rank, so every figure is a measured value at the right rank."""

import pytest

from bench.stats import latency_summary, percentile


def test_p50_of_five_values_is_the_middle_one():
    """p50 of [1, 2, 3, 4, 5] is 3 (rounding p / 100 * n half to even once gave 2)."""
    assert percentile([1, 2, 3, 4, 5], 50) == 3


def test_p95_of_thirty_values_is_the_29th():
    """p95 of 30 values is the 29th: rank ceil(28.5), not 28."""
    assert percentile([float(v) for v in range(1, 31)], 95) == 29


@pytest.mark.parametrize(
    ("n", "p", "rank"),
    [(1, 50, 1), (2, 50, 1), (4, 50, 2), (10, 90, 9), (20, 95, 19), (100, 99, 99), (101, 99, 100), (7, 0, 1)],
)
def test_the_rank_is_the_smallest_with_p_percent_at_or_below_it(n, p, rank):
    """Nearest rank: ceil(p / 100 * n), exact where p * n is a whole multiple of 100."""
    assert percentile([float(v) for v in range(1, n + 1)], p) == rank


def test_no_values_give_none_and_p100_is_the_maximum():
    """An empty window has no percentile; p100, reported as max, is the largest value."""
    assert percentile([], 50) is None
    assert latency_summary([3.0, 1.04, 2.0], (50, 99, 100)) == {"p50": 2.0, "p99": 3.0, "max": 3.0}
    assert latency_summary([]) == {"p50": None, "p95": None, "p99": None}


def test_a_percentile_outside_0_to_100_is_refused():
    """A typo such as 950 is an error, not an index past the end."""
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 950)
