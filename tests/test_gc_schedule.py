"""Full garbage collections between broadcasts (ticker/runtime/gc_schedule.py): pure logic on the real gc."""

import gc
import weakref

import pytest

from ticker.runtime.gc_schedule import AUTOMATIC_FULL_OFF, FullCollections


class Node:
    def __init__(self):
        self.me = self  # a reference cycle: only the cycle collector frees it


@pytest.fixture
def thresholds():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def old_garbage(count: int) -> weakref.ref:
    """``count`` garbage cycles that already sit in the old generation; a weak reference to one of them."""
    nodes = [Node() for _ in range(count)]
    gc.collect(1)  # survivors of the younger generations move to the old one
    probe = weakref.ref(nodes[0])
    del nodes
    return probe


def test_full_collections_wait_for_the_caller_then_free_old_cycles(thresholds):
    """Python stops running full collections itself; the caller's call frees old garbage once it has grown."""
    collections = FullCollections(check_every_s=0, floor=0)
    collections.take_over()
    assert gc.get_threshold()[2] == AUTOMATIC_FULL_OFF
    assert collections.between_broadcasts(0.0) is None  # nothing grew yet

    probe = old_garbage(collections.baseline // 2 + 1_000)
    # Allocations that stay alive drive Python's own collections, which would include full ones by default.
    kept = [[] for _ in range(collections.baseline + 100_000)]
    assert probe() is not None, "Python ran a full collection on its own"
    del kept

    took_ms = collections.between_broadcasts(1.0)
    assert took_ms is not None and took_ms >= 0
    assert probe() is None


def test_full_collections_skip_small_growth_and_check_at_most_every_interval(thresholds):
    """Under a quarter's growth, or before the check interval has passed, no collection runs."""
    collections = FullCollections(check_every_s=10, floor=0)
    collections.take_over()
    small = old_garbage(max(1, collections.baseline // 10))
    assert collections.between_broadcasts(0.0) is None and small() is not None
    big = old_garbage(collections.baseline)
    assert collections.between_broadcasts(5.0) is None and big() is not None  # checked at 0.0; next at 10.0
    assert collections.between_broadcasts(10.0) is not None and big() is None and small() is None


def test_handing_back_restores_pythons_own_full_collections(thresholds):
    """When the hub stops, Python schedules full collections again, as before the take-over."""
    before = gc.get_threshold()
    collections = FullCollections()
    collections.take_over()
    collections.hand_back()
    assert gc.get_threshold() == before
    assert collections.between_broadcasts(100.0) is None  # no longer the caller's job


def test_a_broadcast_pauses_automatic_collection_and_leaves_it_as_it_found_it():
    """Inside ``paused`` (a step's fan-out) no automatic pass runs, however much it allocates: a young cycle made
    there survives thousands of allocations; afterwards the collector is on again (also after an error), and a
    pause inside a pause, or with collection already off, changes nothing."""
    from ticker.runtime.gc_schedule import paused

    assert gc.isenabled()
    with paused():
        assert not gc.isenabled()
        probe = weakref.ref(Node())
        churn = [[i] for i in range(100_000)]  # far past generation 0's threshold (700 allocations)
        assert probe() is not None, "no automatic collection ran"
        with paused():
            assert not gc.isenabled()
        assert not gc.isenabled(), "the inner pause does not switch it back on"
    del churn
    assert gc.isenabled()
    with pytest.raises(RuntimeError), paused():
        raise RuntimeError("a step that failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with paused():
            pass
        assert not gc.isenabled(), "off before, off after"
    finally:
        gc.enable()
