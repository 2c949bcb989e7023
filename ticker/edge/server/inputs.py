"""A lean input queue for each daphne application instance: what ``receive()`` reads a connection's events from.

daphne gives every connection an ``asyncio.Queue`` (``Server.create_application``): three deques and an Event
with a fourth, about 3 KB that an idle WebSocket holds for its whole life (``bench_connmem``), to carry the few
events a connection ever gets (the connect, a client's rare frames, the disconnect). ``InputQueue`` does the same
job with a list and at most one waiter. daphne only ever calls ``put_nowait`` on it and hands ``get`` to the
application as ``receive``.

``lean_inputs`` gives each daphne server a ``create_application`` that is daphne 4.2.3's own with this queue in
place of ``asyncio.Queue``, and only if daphne's method is still the one it was written from (its source's
hash): otherwise it logs a warning and leaves daphne as it is. A test reads the verified source
(tests/test_input_queue.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import types
from functools import partial
from typing import Any

log = logging.getLogger(__name__)

# sha256 of daphne 4.2.3's Server.create_application source (inspect.getsource), first 16 hex digits.
VERIFIED_SOURCE = "f1e300b4ecf636c8"


class InputQueue:
    """First in, first out; ``get`` waits for an item; nothing is ever lost to a cancelled ``get`` (the item stays
    for the next one, as asyncio.Queue keeps it)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list = []
        self._waiter: asyncio.Future | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            if self._waiter is None or self._waiter.done():
                self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._items.pop(0)

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items


def _create_application(self: Any, protocol: Any, scope: dict) -> InputQueue | None:
    """daphne 4.2.3's ``Server.create_application``, with ``InputQueue`` for ``asyncio.Queue``."""
    assert "application_instance" not in self.connections[protocol]
    input_queue = InputQueue()
    scope.setdefault("asgi", {"version": "3.0"})
    application_instance = self.application(
        scope=scope,
        receive=input_queue.get,
        send=partial(self.handle_reply, protocol),
    )
    if protocol not in self.connections:
        return None
    self.connections[protocol]["application_instance"] = asyncio.ensure_future(
        application_instance,
        loop=asyncio.get_event_loop(),
    )
    return input_queue


def source_hash() -> str | None:
    """The hash of the installed daphne's ``Server.create_application`` source, or None if it cannot be read."""
    from daphne.server import Server

    try:
        return hashlib.sha256(inspect.getsource(Server.create_application).encode()).hexdigest()[:16]
    except (OSError, TypeError):
        return None


def lean_inputs(servers: tuple) -> bool:
    """Give each daphne server our ``create_application``; False (and a warning) if daphne's has changed."""
    if (found := source_hash()) != VERIFIED_SOURCE:
        log.warning(
            "daphne's Server.create_application is not the one ticker.edge.server.inputs was written from "
            "(source %s, verified %s): each connection keeps daphne's asyncio.Queue",
            found,
            VERIFIED_SOURCE,
        )
        return False
    for server in servers:
        server.create_application = types.MethodType(_create_application, server)
    return bool(servers)
