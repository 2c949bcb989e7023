"""What the hub and a WebSocket consumer need of a connection's outlet, and nothing else.

Implemented by the daphne adapter (``ticker.edge.server.DaphneOutlet``), the ASGI queue used under any
other server (``ticker.edge.queued.QueuedOutlet``) and the SSE stream's queue
(``ticker.edge.streams._StreamOutlet``). Defined here, not beside them, so the hub can name it without
importing ticker.edge.
"""

from __future__ import annotations

from typing import Protocol

from ticker.wire.frames import Frame


class Outlet(Protocol):
    """What the fan-out writes to: it never awaits, so a client that does not read holds up no other."""

    @property
    def backlogged(self) -> bool:
        """True while the client is not reading and what is queued for it has reached its bound: the hub
        then sends it nothing more and, once it reads again, one snapshot instead of the frames it missed."""

    @property
    def deflate(self) -> bool:
        """True if this connection is sent our own compressed frames (``Frame.deflated``): the fan-out then
        spends its per-step budget of compressed single-connection frames on it. Every outlet declares it
        (the SSE outlet and the queued one: False)."""

    def write(self, frame: Frame) -> None:
        """Send a frame now or queue it, without awaiting; one that fails is dropped by the fan-out."""

    def write_all(self, frames: list[Frame]) -> None:
        """Send frames in this order as ``write`` would, in one socket write where the server allows it (a step's
        quotes frame and the user's alert fires that ride with it: one send, not two)."""


class SocketOutlet(Outlet, Protocol):
    """A WebSocket's outlet: what its consumer (ticker.edge.consumers.QuoteConsumer) uses besides."""

    @property
    def compression(self) -> str:
        """What the connection negotiated, for the metrics: "shared", "per_connection", "none" or "server"."""

    async def drained(self) -> None:
        """Returns once the client's queue has room: the consumer waits here before acting on its message."""

    def close(self, code: int, reason: str = "") -> None:
        """Close with any RFC 6455 code (1008, 1009, 1013, ...)."""

    def stop(self) -> None:
        """Forget the connection (called once, when it has gone)."""
