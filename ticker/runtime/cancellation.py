"""Loops that talk to Redis stop when they are cancelled, also on Python 3.11.

On Python 3.11, ``asyncio.wait_for`` returns its result, and drops the caller's cancellation, when the
awaited future finishes in the same turn of the event loop as the cancel (python/cpython#86296; the
3.12 rewrite of ``wait_for`` fixed it). redis-py 8.1.0 awaits every write through ``wait_for``
(``Connection.send_packed_command``), and channels_redis talks to Redis through redis-py, so a task that
loops over Redis calls can lose the one cancellation meant to stop it and run on for ever: seen as a test
run that hung while its event loop waited for the operations report task (ticker/ops/registry.py) to finish, and
reproduced outside the site (a loop of ``SET`` cancelled in its first few milliseconds kept running in
about one try in eight). The task still counts the request (``Task.cancelling()``), so each such loop
calls ``stop_if_cancelled`` once per turn.
"""

from __future__ import annotations

import asyncio


def stop_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop and the request was lost on the way."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
