"""Loops over Redis stop when cancelled, also when 3.11's wait_for drops the cancel (ticker/runtime/cancellation.py).

Each try cancels a loop a little later in its first Redis calls, against the suite's real redis-server:
some of the cancels land while redis-py's ``wait_for`` around a socket write completes, which is the
window in which Python 3.11 loses them. Before ticker/runtime/cancellation.py the operations report kept
running after such a cancel in about one try in eight, and a test's event loop waited for it for ever.
"""

from __future__ import annotations

import asyncio

import pytest

from ticker.ops import registry as ops

pytestmark = pytest.mark.asyncio

TRIES = 120
# A cancelled loop normally ends in the same turn; 5 s only bounds a machine that is very busy.
ENDS_WITHIN_S = 5.0


async def cancel_early(start, try_number: int) -> bool:
    """Start the loop, cancel it after a few turns or a few milliseconds, and say whether it ended."""
    task = asyncio.create_task(start())
    if try_number % 2:
        for _ in range(try_number // 2):
            await asyncio.sleep(0)
    else:
        await asyncio.sleep((try_number % 40) / 10_000)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=ENDS_WITHIN_S)
    if not done:
        while not task.done():  # leave nothing running for the next test
            task.cancel()
            await asyncio.wait({task}, timeout=1)
    return bool(done)


async def test_the_operations_report_stops_at_the_first_cancel_every_time(clean_redis):
    ended = [await cancel_early(lambda: ops.report("web", lambda: {"role": "web"}), n) for n in range(TRIES)]
    assert all(ended), f"still running after cancel in {ended.count(False)} of {TRIES} tries"
    assert not clean_redis.client().keys("*:ops:*"), "a cancelled report removes its key"
