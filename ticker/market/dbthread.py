"""The market's database work on one thread of its own, over one connection kept open between steps.

Channels' ``database_sync_to_async`` closes the thread's connection before and after every call
(``close_old_connections`` with ``CONN_MAX_AGE = 0``, which the web processes need: under ASGI each request may
run on another thread). For the market that meant a new PostgreSQL connection for every step, four times a
second: ~4 ms of connecting (TCP, authentication, the session's settings) before the step's first statement,
paid by every quote's latency, and no statement could stay prepared. Here every call runs on the same thread,
so the step reuses the connection the last step left open.

A call that raises closes the connection before the error goes on (a query cut by a partition or a restarted
server leaves it unusable; the next call connects again, within the network timeouts of config/settings.py).
``close`` closes it and ends the thread when the market stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import connection

T = TypeVar("T")


class DatabaseThread:
    """``await db(fn, *args, **kwargs)``: ``fn`` run on the market's database thread."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="market-db")

    async def __call__(self, fn: Callable[..., T], /, *args, **kwargs) -> T:
        call = functools.partial(_closing_on_error, functools.partial(fn, *args, **kwargs))
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        """Close the thread's connection and let the thread end."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, _close)
        finally:
            self._executor.shutdown(wait=False)


def _closing_on_error(call: Callable[[], T]) -> T:
    try:
        return call()
    except BaseException:
        with contextlib.suppress(Exception):  # already broken: the error that matters is the call's
            connection.close()
        raise


def _close() -> None:
    connection.close()  # looked up on the thread it runs on: ``connection`` is per thread
