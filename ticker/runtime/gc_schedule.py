"""Keep the garbage collector's full passes short in long-running processes."""

import contextlib
import gc
import time


def freeze_startup_objects() -> None:
    """Move everything alive after start-up out of the collector's sight.

    Django, Channels, Twisted and the app leave a few hundred thousand
    long-lived objects behind at import time. Every full (generation 2)
    collection walked all of them: 50-60 ms pauses in daphne, run_market and
    the load generators, several per minute, which showed up as the
    benchmark's latency tail (docs/benchmarks.md, "The latency tail").
    Frozen objects are never collected, so call this once, after start-up.
    """
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def paused():
    """No automatic collection inside (a broadcast): the frames, bytes and lists a step makes for thousands of
    connections are freed by their reference counts as the step ends, but Python's generation-0 and -1 passes,
    every 700 allocations, walked them (and everything young) dozens of times a step meanwhile. The passes due
    run after it, between broadcasts. Nested or with collection off, it leaves the collector as it found it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# Python's own rule for a full collection is "the old generation grew by a
# quarter"; with thousands of connections (about 150 tracked objects each:
# coroutines, Twisted and autobahn state, the Channels scope) one full pass
# takes 100-300 ms (2,500 connections, measured with gc.callbacks), and it
# lands wherever an allocation tips it over, often in the middle of a
# broadcast, several times during a burst of connects. A web process's hub
# takes the decision over: same growth rule, but checked between two
# broadcasts, so the pause delays no frame already due.
AUTOMATIC_FULL_OFF = 1_000_000  # gen1 collections before Python would consider a full one
# Several hubs can run in one process (tests: one per event loop): Python gets
# its schedule back when the last one stops. On Python 3.14 and later, whose
# collector is incremental, the third threshold may mean nothing (untested).
_owners = 0
_python_thresholds = gc.get_threshold()


class FullCollections:
    """Full (generation 2) collections at moments the caller chooses: call ``between_broadcasts``."""

    def __init__(self, *, growth: float = 0.25, check_every_s: float = 2.0, floor: int = 20_000):
        self.growth, self.check_every_s, self.floor = growth, check_every_s, floor
        self.next_check = 0.0
        self.baseline = 0
        self.active = False

    def take_over(self) -> None:
        """Stop Python's automatic full collections in this process; from now on the caller runs them."""
        global _owners, _python_thresholds
        if self.active:
            return
        if _owners == 0:
            _python_thresholds = gc.get_threshold()
            gc.set_threshold(_python_thresholds[0], _python_thresholds[1], AUTOMATIC_FULL_OFF)
        _owners += 1
        self.baseline = len(gc.get_objects(generation=2))
        self.active = True

    def hand_back(self) -> None:
        """Give full collections back to Python once no caller runs them any more (the last hub stopped)."""
        global _owners
        if not self.active:
            return
        self.active = False
        _owners -= 1
        if _owners == 0:
            gc.set_threshold(*_python_thresholds)

    def between_broadcasts(self, now: float) -> float | None:
        """Run a full collection if the old generation grew by ``growth`` since the last; its duration in ms."""
        if not self.active or now < self.next_check:
            return None
        self.next_check = now + self.check_every_s
        size = len(gc.get_objects(generation=2))
        if size < max(self.floor, self.baseline * (1 + self.growth)):
            return None
        started = time.perf_counter()
        gc.collect()
        self.baseline = len(gc.get_objects(generation=2))
        return (time.perf_counter() - started) * 1000
