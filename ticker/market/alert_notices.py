"""The leading market's ear for alerts to read again: the re-armed and enabled ones named on the channel layer, and
every ``alerts.RECONCILE_EVERY_S`` the ids of every armed alert (for a notice lost while Redis was away).

Both only tell the book (ticker/market/alerts.py) which alerts to read; the book reads them at its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from channels.db import database_sync_to_async

from ticker.market import alert_rows, alerts

log = logging.getLogger(__name__)


async def listen_for_alert_changes(layer, book) -> None:
    """Keep the current book (``book()``) told of re-armed and enabled alerts: the notices on
    ``alerts.CHANGED_GROUP`` at once, and every ``alerts.RECONCILE_EVERY_S`` the ids of every armed alert, for a
    notice lost while Redis was away."""
    await asyncio.gather(_notices(layer, book), _reconcile(book))


async def _notices(layer, book) -> None:
    """Hand the alerts named on ``alerts.CHANGED_GROUP`` (re-armed, enabled) to the current book, which reads them
    at its next step. Joins the group again every minute (channels_redis forgets members after its group expiry,
    300 s here), and keeps listening through Redis outages (a notice lost meanwhile is found by ``_reconcile``)."""
    if layer is None:
        return
    channel = await layer.new_channel()
    rejoin = asyncio.create_task(_rejoin(layer, channel))
    try:
        while True:
            try:
                message = await layer.receive(channel)
            except Exception as exc:
                log.warning("could not read alert changes (%s); trying again in 1 s", exc)
                await asyncio.sleep(1)
                continue
            book().notice(message.get("ids", ()))
    finally:
        rejoin.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(layer.group_discard(alerts.CHANGED_GROUP, channel), timeout=2)


async def _reconcile(book) -> None:
    read = database_sync_to_async(alert_rows.armed_ids, thread_sensitive=False)
    while True:
        await asyncio.sleep(alerts.RECONCILE_EVERY_S)
        try:
            book().reconcile(await read())
        except Exception as exc:
            log.warning("could not read the armed alerts (%s); trying again in %.0f s", exc, alerts.RECONCILE_EVERY_S)


async def _rejoin(layer, channel: str) -> None:
    while True:
        try:
            await layer.group_add(alerts.CHANGED_GROUP, channel)
        except Exception as exc:
            log.warning("could not join %s (%s); trying again in 60 s", alerts.CHANGED_GROUP, exc)
        await asyncio.sleep(60)
