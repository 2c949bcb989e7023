"""Each daphne connection's input queue (ticker/edge/server/inputs.py): daphne's ``asyncio.Queue`` made lean. In
order, ``get`` waits for an item, a cancelled ``get`` loses nothing; and the pinned daphne is the one it was
written from (else every connection keeps daphne's queue, with a warning)."""

from __future__ import annotations

import asyncio

import pytest

from ticker.edge.server.inputs import VERIFIED_SOURCE, InputQueue

from .conftest import printed_by_django


@pytest.mark.asyncio
async def test_items_come_out_in_order_and_get_waits_for_the_next():
    queue = InputQueue()
    queue.put_nowait({"type": "websocket.connect"})
    queue.put_nowait({"type": "websocket.receive", "text": "1"})
    assert queue.qsize() == 2
    assert await queue.get() == {"type": "websocket.connect"}
    assert await queue.get() == {"type": "websocket.receive", "text": "1"}
    assert queue.empty()
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)  # the get is now waiting on an empty queue
    assert not waiting.done()
    queue.put_nowait({"type": "websocket.disconnect"})
    assert await asyncio.wait_for(waiting, 5) == {"type": "websocket.disconnect"}


@pytest.mark.asyncio
async def test_a_cancelled_get_leaves_the_item_for_the_next():
    """daphne cancels an application at shutdown while it waits in ``receive``: an item put in the same turn is
    not lost with it (asyncio.Queue keeps it too)."""
    queue = InputQueue()
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("kept")
    waiting.cancel()  # before the waiting get ran again
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await asyncio.wait_for(queue.get(), 5) == "kept"
    # And two gets waiting at once each get one item.
    first, second = asyncio.ensure_future(queue.get()), asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("a")
    queue.put_nowait("b")
    assert sorted(await asyncio.wait_for(asyncio.gather(first, second), 5)) == ["a", "b"]


def test_the_pinned_daphne_is_the_one_the_lean_queue_was_written_from():
    """Its ``Server.create_application`` source hashes as verified: the lean queue is installed, not skipped."""
    printed, stderr = printed_by_django("from ticker.edge.server import inputs; print(inputs.source_hash())")
    assert printed == VERIFIED_SOURCE, stderr
