"""The generic outlet (ticker/edge/server.py, QueuedOutlet): bounded, in order, and it holds back a client that
sends without reading. Pure asyncio with a stand-in ASGI send that the test opens and shuts. And the daphne
outlet's own framing, against autobahn's."""

from __future__ import annotations

import asyncio

import pytest

from ticker.edge.queued import QueuedOutlet
from ticker.wire.frames import Frame

from .clients import until

pytestmark = pytest.mark.asyncio


class Send:
    """An ASGI send that blocks while ``open`` is clear, as a server's send does for a client that stops reading."""

    def __init__(self):
        self.sent: list[dict] = []
        self.open = asyncio.Event()
        self.open.set()

    async def __call__(self, message: dict) -> None:
        await self.open.wait()
        self.sent.append(message)


async def test_frames_go_out_in_order_and_a_stalled_client_is_backlogged_at_the_bound():
    send = Send()
    outlet = QueuedOutlet(send, limit=4)
    send.open.clear()
    for i in range(5):
        outlet.write(Frame(str(i)))
    assert outlet.backlogged
    drained = asyncio.create_task(outlet.drained())
    await asyncio.sleep(0)
    assert not drained.done()  # a client's next message waits until its queue has room
    send.open.set()
    await asyncio.wait_for(drained, 5)
    await until(lambda: len(send.sent) == 5, limit=5, what="the queue to drain")
    assert [m["text"] for m in send.sent] == ["0", "1", "2", "3", "4"] and not outlet.backlogged
    outlet.stop()


async def test_a_broken_connection_releases_whoever_waits_for_room():
    async def broken(message: dict) -> None:
        raise OSError("gone")

    outlet = QueuedOutlet(broken, limit=1)
    outlet.write(Frame("a"))
    outlet.write(Frame("b"))
    await asyncio.wait_for(outlet.drained(), 5)  # the drain task ended: nothing may wait forever
    outlet.stop()


async def test_our_server_frames_are_autobahns_byte_for_byte_at_every_length_encoding():
    """The daphne outlet frames without a library call (text_frame); it must match autobahn (RFC 6455 5.2)."""
    from autobahn.websocket.protocol import PreparedMessage

    from ticker.edge.server.outlet import _framing_agrees
    from ticker.wire.frames import text_frame

    for size in (0, 1, 125, 126, 127, 65535, 65536, 100_000):
        payload = ("é" * size).encode()[:size]  # the length is in bytes, not characters
        prepared = PreparedMessage(payload, isBinary=False, applyMask=False, doNotCompress=False)
        assert text_frame(payload) == prepared.payloadHybi, size
    assert _framing_agrees()


async def test_a_frame_made_from_bytes_reads_as_text_and_the_other_way_round():
    assert Frame(payload='{"a":"é"}'.encode()).text == '{"a":"é"}'
    assert Frame('{"a":"é"}').payload == '{"a":"é"}'.encode()
