"""The token bucket behind the WebSocket rate limit: pure logic, time passed in."""

import pytest

from ticker.ratelimit import TokenBucket


def allowed(bucket: TokenBucket, count: int, now: float) -> int:
    return sum(bucket.take(now) for _ in range(count))


def test_a_new_bucket_allows_its_burst_at_once_and_no_more():
    """A fresh connection may send ``burst`` messages in the same instant; the next one is refused."""
    bucket = TokenBucket(rate=20, burst=40, now=0.0)
    assert allowed(bucket, 40, now=0.0) == 40
    assert not bucket.take(0.0)


def test_tokens_come_back_at_the_rate():
    """After the burst, one message per 1/rate seconds is allowed again."""
    bucket = TokenBucket(rate=20, burst=40, now=0.0)
    allowed(bucket, 40, now=0.0)
    assert not bucket.take(0.04)
    assert bucket.take(0.05)
    assert not bucket.take(0.05)
    assert allowed(bucket, 20, now=1.05) == 20
    assert not bucket.take(1.05)


def test_a_client_at_the_sustained_rate_is_never_refused():
    """Sending exactly ``rate`` messages a second for a minute never hits the limit."""
    bucket = TokenBucket(rate=20, burst=40, now=0.0)
    assert all(bucket.take(i / 20) for i in range(20 * 60))


def test_a_client_faster_than_the_rate_is_refused_once_the_burst_is_spent():
    """At 30 messages a second against 20/s with burst 40, refusals start after about 3.9 seconds."""
    bucket = TokenBucket(rate=20, burst=40, now=0.0)
    first_refused = next(i for i in range(1000) if not bucket.take(i / 30))
    # Before message i (at t = i/30) the bucket holds 40 - i/3 tokens: it runs dry near i = 117.
    assert 116 <= first_refused <= 118


def test_an_idle_bucket_refills_only_up_to_the_burst():
    """An hour of silence does not save up more than ``burst`` messages."""
    bucket = TokenBucket(rate=20, burst=40, now=0.0)
    assert allowed(bucket, 100, now=3600.0) == 40


def test_a_clock_going_back_does_not_drain_or_fill_the_bucket():
    """An earlier ``now`` than the last one is treated as no time passing."""
    bucket = TokenBucket(rate=1, burst=2, now=10.0)
    assert allowed(bucket, 2, now=10.0) == 2
    assert not bucket.take(5.0)
    assert bucket.take(11.0)


@pytest.mark.parametrize("rate, burst", [(0, 10), (-1, 10), (float("nan"), 10), (10, 0)])
def test_a_bucket_that_could_never_allow_anything_is_refused(rate, burst):
    """rate <= 0 (or NaN) or burst < 1 is a configuration error, not a silent block of every client."""
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst, now=0.0)
