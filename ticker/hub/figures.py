"""The hub's figures for /metrics and the operations report, read by ticker.ops.metrics through ``figures``.

The hub hands metrics this reader (``watch``), so that metrics, which every side imports, imports nothing of
the hub.
"""

from __future__ import annotations

import collections
import weakref
from typing import Protocol

from ticker.hub.fanout import Fanout
from ticker.ops import metrics


class Watched(Protocol):
    """What is read of a hub (ticker.hub.QuoteHub)."""

    fanout: Fanout

    @property
    def feed(self) -> str: ...

    @property
    def step(self) -> int: ...


# The web process's hub (one per event loop, ticker.hub.get_hub); weak, so a test's closed loop takes its hub along.
_watched: weakref.WeakSet[Watched] = weakref.WeakSet()


def watch(hub: Watched) -> None:
    """Called by get_hub when it makes a process's hub: its figures join this process's /metrics."""
    _watched.add(hub)
    metrics.read_hub_figures_with(figures)


def figures() -> dict:
    """This process's fan-out figures (its hubs together): for /metrics and the operations report."""
    frames, sent_bytes = collections.Counter(), collections.Counter()
    figures = metrics.empty_hub_figures()
    kinds = figures["subscriptions"]
    seen = list(_watched)
    for hub in seen:
        sent = hub.fanout.sent
        frames.update(sent.frames)
        sent_bytes.update(sent.bytes)
        figures["updates"] += sent.updates
        figures["held_back"] += sent.held_back
        figures["resnapshotted"] += sent.resnapshotted
        if (p99 := sent.fanout_p99()) is not None:
            figures["p99"] = max(p99, figures["p99"] or 0.0)
        figures["attached"] += len(hub.fanout)
        for delivery in list(hub.fanout.deliveries.values()):
            figures["behind"] += delivery.behind
            interest = delivery.interest
            if interest.everything:
                kinds["all"] += 1
            elif interest.symbols:
                kinds["watchlist"] += 1
                figures["symbols"] += len(interest.symbols)
            else:
                kinds["none"] += 1
    figures.update(
        frames=dict(frames),
        bytes=dict(sent_bytes),
        feed=("live" if all(hub.feed == "live" for hub in seen) else "interrupted") if seen else None,
        step=max((hub.step for hub in seen), default=None),
    )
    return figures
