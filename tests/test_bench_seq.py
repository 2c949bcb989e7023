"""The one seq follower (bench/seq.py) that benchmarks and test clients count with."""

from bench.seq import SeqFollower


def quote(symbol: str, seq: int, ts: int = 1) -> dict:
    return {"symbol": symbol, "seq": seq, "ts": ts}


def test_a_stream_without_breaks_counts_every_update_and_no_gap():
    """Snapshot, then seq +1 per symbol and a growing step: all updates, nothing missing."""
    follower = SeqFollower()
    follower.take({"type": "snapshot", "step": 1, "quotes": [quote("A", 5), quote("B", 9)]})
    follower.take({"type": "quotes", "step": 2, "quotes": [quote("A", 6)]})
    change = follower.take({"type": "quotes", "step": 3, "quotes": [quote("A", 7), quote("B", 10)]})
    assert change.moved == [quote("A", 7), quote("B", 10)] and change.missing == 0
    assert (follower.updates, follower.missing, follower.gaps, follower.steps_back) == (3, 0, [], [])
    assert follower.seq == {"A": 7, "B": 10}


def test_jumps_repeats_and_a_step_that_does_not_grow_are_each_recorded():
    """A jump counts the updates it skipped; a repeated seq is stale; a step that does not grow is noted."""
    follower = SeqFollower()
    follower.take({"type": "snapshot", "step": 4, "quotes": [quote("A", 5)]})
    jump = follower.take({"type": "quotes", "step": 5, "quotes": [quote("A", 8)]})
    repeat = follower.take({"type": "quotes", "step": 5, "quotes": [quote("A", 8)]})
    assert (jump.missing, jump.stale, jump.step_back) == (2, 0, False)
    assert (repeat.moved, repeat.stale, repeat.step_back) == ([], 1, True)
    assert follower.gaps == [("A", 5, 8), ("A", 8, 8)] and follower.steps_back == [(5, 5)]
    assert (follower.missing, follower.stale) == (2, 1)


def test_a_snapshot_is_the_new_baseline_but_never_goes_back():
    """A resnapshot may jump ahead (counted, no gap); a seq lower than held is recorded and ignored."""
    follower = SeqFollower()
    follower.take({"type": "snapshot", "step": 1, "quotes": [quote("A", 5), quote("B", 3)]})
    change = follower.take({"type": "snapshot", "step": 9, "quotes": [quote("A", 9), quote("B", 2)]})
    assert change.moved == [quote("A", 9)] and change.missing == 3
    assert follower.gaps == [] and follower.backwards == [("B", 3, 2)]
    assert follower.seq == {"A": 9, "B": 3}


def test_a_symbol_first_seen_in_a_quotes_frame_starts_its_baseline_there():
    """Nothing held yet: no gap and no update, the next one must continue it."""
    follower = SeqFollower()
    assert follower.take({"type": "quotes", "step": 1, "quotes": [quote("A", 41)]}).moved == []
    follower.take({"type": "quotes", "step": 2, "quotes": [quote("A", 42)]})
    assert (follower.updates, follower.gaps) == (1, [])


def test_heartbeats_and_other_frames_change_nothing():
    """Only snapshots and quotes frames carry seqs."""
    follower = SeqFollower()
    assert follower.take({"type": "heartbeat", "feed": "live", "step": 3, "ts": 1}) == ([], 0, 0, False)
    assert follower.step is None and follower.seq == {}
