"""Keep the garbage collector's full passes short in long-running processes."""

import gc


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
