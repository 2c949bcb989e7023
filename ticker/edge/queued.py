"""A WebSocket's outlet under any ASGI server but daphne on plain TCP: a bounded queue drained through ``send``.

Used under uvicorn or hypercorn, and for daphne's TLS endpoint (whose transport the daphne adapter,
ticker/edge/server/, does not write to directly). A client that stops reading blocks only its own task (its queue
fills, it is backlogged) and never the hub or another client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ticker.wire.frames import Frame

log = logging.getLogger(__name__)

# Per queued (non-daphne) connection: frames waiting for ASGI send. A client
# that reads keeps this near zero; one that stops reading fills it within
# seconds and is then sent nothing until it drains.
QUEUED_FRAMES = 32


class QueuedOutlet:
    """A WebSocket through ASGI ``send``: a bounded queue drained by the connection's own task."""

    deflate = False  # whatever the server negotiated, it compresses (per connection): our frames are not shared
    compression = "server"  # what that is, this module cannot tell

    def __init__(self, send: Callable[[dict], Awaitable[None]], transport=None, limit: int = QUEUED_FRAMES):
        self._send = send
        self._transport = transport  # daphne over TLS: Twisted's backpressure still applies
        self._queue: asyncio.Queue[dict] = asyncio.Queue()
        self._limit = limit
        self._room = asyncio.Event()  # set while fewer than ``limit`` messages wait
        self._room.set()
        self._task = asyncio.create_task(self._drain(), name="websocket-outlet")

    @property
    def backlogged(self) -> bool:
        return self._queue.qsize() >= self._limit or bool(
            self._transport is not None and self._transport.producerPaused
        )

    def write(self, frame: Frame) -> None:
        self._put({"type": "websocket.send", "text": frame.text})

    def write_all(self, frames: list[Frame]) -> None:
        for frame in frames:
            self.write(frame)

    def close(self, code: int, reason: str = "") -> None:
        self._put({"type": "websocket.close", "code": code, "reason": reason})

    async def drained(self) -> None:
        """Wait until the queue is below its bound: the consumer waits here before acting on a client's
        message, so a client that sends but does not read is held back by TCP, not queued for without end."""
        await self._room.wait()

    def _put(self, message: dict) -> None:
        self._queue.put_nowait(message)
        if self._queue.qsize() >= self._limit:
            self._room.clear()

    def stop(self) -> None:
        self._task.cancel()
        self._room.set()  # nobody may wait on a connection that has gone

    async def _drain(self) -> None:
        try:
            await self._drain_until_broken()
        finally:
            self._room.set()  # the connection is going away: a waiting consumer goes on to its disconnect

    async def _drain_until_broken(self) -> None:
        while True:
            message = await self._queue.get()
            if self._queue.qsize() < self._limit:
                self._room.set()
            try:
                await self._send(message)
            except Exception as exc:
                if message["type"] != "websocket.close":
                    log.info("a WebSocket send failed (%s); the connection is going away", exc)
                    return
                # autobahn, under daphne, refuses RFC codes from an application (django/daphne#374).
                with contextlib.suppress(Exception):
                    await self._send({**message, "code": 4000 + message["code"] % 1000})
