"""The cost per WebSocket event of QuoteConsumer's dispatch, against Channels' own (which hops to a thread to
close old database connections before every handler): docs/benchmarks.md, "Channels' dispatch".

Run: DJANGO_DEBUG=1 .venv/bin/python -m bench.dispatch_hop [events]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time


def _consumers() -> dict[str, type]:
    from channels.consumer import AsyncConsumer

    from ticker.edge.consumers import QuoteConsumer

    class Echo(QuoteConsumer):
        """QuoteConsumer's dispatch, with handlers that only accept and echo: what is timed is the way to them."""

        async def __call__(self, scope, receive, send):
            await super(QuoteConsumer, self).__call__(scope, receive, send)  # without the teardown

        async def connect(self):
            await self.accept()

        async def receive(self, text_data=None, bytes_data=None):
            await self.send(text_data=text_data)

        async def disconnect(self, code):
            pass

    class ChannelsEcho(Echo):
        dispatch = AsyncConsumer.dispatch  # Channels' own: aclose_old_connections() before every handler

    return {"channels": ChannelsEcho, "quote_consumer": Echo}


async def _dispatches(cls: type, n: int) -> float:
    """Seconds per ``dispatch`` of a client message, called straight: what Channels adds per event, nothing else."""
    consumer = cls()
    consumer.scope = {"type": "websocket"}

    async def sink(message):
        pass

    consumer.base_send = sink
    message = {"type": "websocket.receive", "text": "ping"}
    for _ in range(200):
        await consumer.dispatch(message)
    started = time.perf_counter()
    for _ in range(n):
        await consumer.dispatch(message)
    return (time.perf_counter() - started) / n


async def _round_trips(cls: type, n: int) -> float:
    """Seconds per message echoed through Channels' test communicator (an ASGI server's queues)."""
    from channels.testing import WebsocketCommunicator

    communicator = WebsocketCommunicator(cls.as_asgi(), "/ws/quotes/")
    await communicator.connect()
    for _ in range(200):
        await communicator.send_to(text_data="ping")
        await communicator.receive_from()
    started = time.perf_counter()
    for _ in range(n):
        await communicator.send_to(text_data="ping")
        await communicator.receive_from()
    took = (time.perf_counter() - started) / n
    await communicator.disconnect()
    return took


async def main(n: int, runs: int = 5) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    figures: dict[str, dict[str, list[float]]] = {}
    for _ in range(runs):  # alternated, so both see the same machine
        for name, cls in _consumers().items():
            mine = figures.setdefault(name, {"dispatch": [], "round_trip": []})
            mine["dispatch"].append(await _dispatches(cls, n))
            mine["round_trip"].append(await _round_trips(cls, n))
    for name, mine in figures.items():
        print(
            f"{name:15} dispatch {statistics.median(mine['dispatch']) * 1e6:6.1f} us per event, "
            f"round trip {statistics.median(mine['round_trip']) * 1e6:6.1f} us (median of {runs} runs of {n} events)"
        )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
