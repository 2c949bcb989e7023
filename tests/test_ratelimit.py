"""The token buckets behind the WebSocket limits (messages, and frames: issue 21): pure logic, time passed in."""

import pytest

from ticker.edge.ratelimit import DEFLATE_SLACK_BYTES, RATE_LIMITED, TOO_FRAGMENTED, TOO_LARGE, FrameGuard, TokenBucket


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


# FrameGuard: every client frame, as its header is read (issue 21; ticker/edge/server.py asks it).


def guard() -> FrameGuard:
    return FrameGuard(rate=200, burst=250, max_fragments=64, max_bytes=16 * 1024, now=0.0)


def test_every_frame_takes_from_the_budget_control_frames_too():
    """Pings, pongs and data frames alike: the 251st frame in one instant is refused as rate_limited."""
    frames = guard()
    for i in range(250):
        assert frames.frame(data=i % 2 == 0, first=True, length=10, now=0.0) is None
    assert frames.frame(data=False, first=False, length=0, now=0.0) == RATE_LIMITED
    assert frames.frame(data=False, first=False, length=0, now=0.005) is None  # one back after 1/200 s


def test_a_message_may_have_64_fragments_and_not_65():
    """The 65th frame of one message is refused (too_fragmented); a new message starts counting again."""
    frames = guard()
    assert frames.frame(data=True, first=True, length=1, now=0.0) is None
    for _ in range(63):
        assert frames.frame(data=True, first=False, length=1, now=0.0) is None
    assert frames.frame(data=True, first=False, length=1, now=0.0) == TOO_FRAGMENTED
    fresh = guard()
    for _ in range(3):
        assert fresh.frame(data=True, first=True, length=1, now=0.0) is None


def test_a_message_is_refused_at_the_frame_that_takes_it_past_16_kib():
    """Sizes add up over fragments; exactly 16 KiB passes, one byte more is too_large before the payload is read."""
    frames = guard()
    assert frames.frame(data=True, first=True, length=16_000, now=0.0) is None
    assert frames.frame(data=True, first=False, length=384, now=0.0) is None
    assert frames.frame(data=True, first=False, length=1, now=0.0) == TOO_LARGE


def test_a_compressed_message_is_measured_inflated():
    """Compressed frames may run a little over on the wire; the inflated bytes may not pass 16 KiB."""
    frames = guard()
    assert frames.frame(data=True, first=True, length=16_400, now=0.0, compressed=True) is None
    assert frames.inflated(16 * 1024) is None
    assert frames.inflated(1) == TOO_LARGE
    past = 16 * 1024 + DEFLATE_SLACK_BYTES + 1
    assert frames.frame(data=True, first=True, length=past, now=0.0, compressed=True) == TOO_LARGE
