"""What the fan-out (ticker/hub/fanout.py) knows of one connection, and owns: the one place its delivery state lives."""

from __future__ import annotations

from ticker.hub.interest import Interest
from ticker.hub.outlet import Outlet
from ticker.hub.ratecap import RateCap


class Delivery:
    """What the hub knows of one connection: what it wants, its format and rate cap, and whether it fell behind."""

    __slots__ = ("outlet", "interest", "delta", "cap", "behind", "movers", "movers_shown")

    def __init__(self, outlet: Outlet, interest: Interest, delta: bool = False):
        self.outlet = outlet
        self.interest = interest
        self.delta = delta  # quotes frames carry each symbol's changes only (docs/protocol.md, "Quote formats")
        self.cap: RateCap | None = None  # max_rate, if the client asked for one
        # Set while the client does not read (its outlet is backlogged): it is
        # sent nothing, and once it reads again, a snapshot instead of a backlog.
        self.behind = False
        self.movers = 0  # how many gainers and losers it follows (0: none)
        self.movers_shown: tuple | None = None  # MoversBoard.key of the last movers frame it was sent
