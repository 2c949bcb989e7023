"""daphne with a memory probe (``bench_connmem``): on SIGUSR1 the process writes where its Python memory is.

Run as ``python -X tracemalloc=N -m bench.memserve <daphne's arguments>``; each SIGUSR1 writes
``$TICKER_MEMPROBE_DIR/probe-PID-K.pickle``: a tracemalloc snapshot, the count and shallow size of every
garbage-collected object by type, and the process's RSS. The signal is handled on the main thread between two
bytecodes, on the reactor's loop: nothing else runs while it writes.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import sys
import tracemalloc
from collections import Counter
from pathlib import Path


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def probe(count: list[int]) -> None:
    gc.unfreeze()  # frozen objects are neither collected nor listed (the site freezes its start-up objects)
    gc.collect()
    # The snapshot first: reading an object's __dict__ allocates one (a function's, and an instance's whose
    # attributes Python 3.11 keeps inline), so the instance dicts are read only after the snapshot and only from
    # the second probe on: the idle probe's reads would be counted as growth by the next.
    snapshot = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
    read_dicts = count[0] > 0
    types: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    attrs: Counter[str] = Counter()  # of instances with a __dict__: their attributes, and the dict's size
    dicts: Counter[str] = Counter()
    for obj in gc.get_objects():
        name = f"{type(obj).__module__}.{type(obj).__qualname__}"
        types[name] += 1
        sizes[name] += sys.getsizeof(obj)
        if read_dicts and isinstance(getattr(obj, "__dict__", None), dict) and not isinstance(obj, type):
            attrs[name] += len(obj.__dict__)
            dicts[name] += sys.getsizeof(obj.__dict__)
    path = Path(os.environ["TICKER_MEMPROBE_DIR"]) / f"probe-{os.getpid()}-{count[0]}.pickle"
    count[0] += 1
    with open(path, "wb") as out:
        pickle.dump(
            {
                "snapshot": snapshot,
                "types": types,
                "sizes": sizes,
                "attrs": attrs,
                "dicts": dicts,
                "rss_kib": _rss_kib(),
            },
            out,
        )
    path.with_suffix(".done").touch()


def main() -> None:
    count = [0]
    signal.signal(signal.SIGUSR1, lambda *_: probe(count))
    from daphne.cli import CommandLineInterface

    sys.argv = ["daphne", *sys.argv[1:]]
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
