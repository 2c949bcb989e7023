"""Reference servers for ``bench_fanout``: the same feed, without the site.

Each one follows the market exactly as a ticker web process does (ONE
channel in the ``quotes`` group of the Redis channel layer, the batch
encoded ONCE per step) and broadcasts the frame to every connected client.
What differs is only what sits between that text and the socket:

- ``floor_app``: a bare ASGI app, direct ``websocket.send`` per client. Run
  under daphne it is daphne's floor, under uvicorn uvicorn's.
- ``python -m bench.refs websockets``: the ``websockets`` library's
  own ``broadcast`` (no framework, no ASGI) on uvloop: Python's floor.
- ``socketio_app``: python-socketio on ASGI, ``emit`` to everyone: the peer
  a Django user might pick instead of Channels.

No Django project here (no settings, no ORM, no middleware): a reference
must not pay for what it is compared against. The group, the event and the
frame come from ticker.wire.protocol, which needs none of that.
The channel layer is configured from the same environment variables as the
site's settings (REDIS_URL, TICKER_CHANNEL_PREFIX).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable

from channels_redis.core import RedisChannelLayer

from ticker.wire import protocol


def feed_layer() -> RedisChannelLayer:
    """The site's channel layer, as config/settings.py builds it."""
    return RedisChannelLayer(
        hosts=[os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")],
        prefix=os.environ.get("TICKER_CHANNEL_PREFIX", "ticker"),
        capacity=100,
        expiry=60,
        group_expiry=300,
    )


def frame(message: dict) -> dict:
    """The quotes frame the site sends for a batch."""
    return protocol.quotes_frame(message["quotes"], step=message["step"])


async def follow_feed(on_batch: Callable) -> None:
    """Call ``on_batch(message)`` (and await it if it is a coroutine) for every batch with quotes."""
    layer = feed_layer()
    channel = await layer.new_channel()
    await layer.group_add(protocol.QUOTES_GROUP, channel)
    while True:
        message = await layer.receive(channel)
        if message.get("type") == protocol.BATCH_EVENT and message["quotes"]:
            result = on_batch(message)
            if asyncio.iscoroutine(result):
                await result


def encode(message: dict) -> str:
    return protocol.encode(frame(message))


# --- bare ASGI: one subscription per process, a direct send per client ------

_floor_sends: dict[Callable, None] = {}
_floor_feed: asyncio.Task | None = None


async def _floor_broadcast(message: dict) -> None:
    event = {"type": "websocket.send", "text": encode(message)}
    for send in list(_floor_sends):
        try:
            await send(event)
        except Exception:
            _floor_sends.pop(send, None)


async def floor_app(scope, receive, send) -> None:
    """Called by the ASGI server for every connection; WebSocket only."""
    global _floor_feed
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]
            await send({"type": kind + ".complete"})  # lifespan.startup or lifespan.shutdown
            if kind == "lifespan.shutdown":
                return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if _floor_feed is None:
        _floor_feed = asyncio.create_task(follow_feed(_floor_broadcast))
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    _floor_sends[send] = None
    try:
        while (await receive())["type"] != "websocket.disconnect":
            pass  # the subscribe message: every client gets everything
    finally:
        _floor_sends.pop(send, None)


# --- python-socketio on ASGI ------------------------------------------------


def _socketio_app():
    import socketio

    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")
    started = False

    async def broadcast(message: dict) -> None:
        await sio.emit("quotes", frame(message))

    @sio.event
    async def connect(sid, environ):
        nonlocal started
        if not started:
            started = True
            sio.start_background_task(follow_feed, broadcast)

    return socketio.ASGIApp(sio)


def __getattr__(name: str):
    # Built on first use, so importing this module does not need python-socketio.
    if name == "socketio_app":
        globals()[name] = app = _socketio_app()
        return app
    raise AttributeError(name)


# --- bare websockets --------------------------------------------------------


async def websockets_server(host: str, port: int) -> None:
    from websockets.asyncio.server import broadcast, serve

    clients = set()

    async def handler(connection):
        clients.add(connection)
        try:
            async for _ in connection:
                pass
        finally:
            clients.discard(connection)

    async with serve(handler, host, port, compression=None, max_queue=None):
        await follow_feed(lambda message: broadcast(clients, encode(message)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=["websockets"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:  # the fastest event loop on offer, as for uvicorn: a reference should be at its best
        import uvloop
    except ImportError:
        asyncio.run(websockets_server(args.host, args.port))
    else:
        uvloop.run(websockets_server(args.host, args.port))


if __name__ == "__main__":
    main()
