"""Operations reports: every web process and the market write their figures to Redis, the admin reads them.

Each process SETs ``<prefix>:ops:<role>:<host>:<pid>`` (prefix: the channel layer's) to a JSON report every
TICKER_OPS_REPORT_S seconds, with a time-to-live of TICKER_OPS_TTL_S, and enters that key in a registry, the
sorted set ``<prefix>:ops:live`` scored by when the report expires: a process that dies or hangs simply
stops refreshing both, and it leaves the operations view (/admin/ops/) within that many seconds. The view reads
the registry (dropping expired entries), never the keyspace: issue 20 found it SCANning all of Redis every
second per open admin tab. The figures are the ones /metrics gives (ticker.ops.metrics), so the view and
Prometheus agree. Every client comes from ``ticker.runtime.redis_conn`` (the one factory, Sentinel included).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import socket
import time
import weakref
from typing import Any

import redis.asyncio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from ticker.ops import metrics
from ticker.runtime.cancellation import stop_if_cancelled
from ticker.runtime.redis_conn import async_redis_client

log = logging.getLogger(__name__)

HOST = socket.gethostname()
STARTED = time.time()
_reporters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task] = weakref.WeakKeyDictionary()


def channel_layer_config() -> dict | None:
    """The channel layer's Redis settings, or None when there is none (the in-memory layer)."""
    layer = settings.CHANNEL_LAYERS.get("default", {})
    if "redis" not in layer.get("BACKEND", "").lower():
        return None
    return layer.get("CONFIG", {})


def redis_client() -> redis.asyncio.Redis:
    """A client of the site's Redis for the reports and the view (``ticker.runtime.redis_conn``: one server or the
    primary Sentinel names). Reads here never block, so a 2 s read timeout (the factory's default is above the
    channel layer's 5 s blocking receive) keeps the view quick when Redis hangs."""
    return async_redis_client(socket_timeout=2)


def key_prefix() -> str:
    return f"{(channel_layer_config() or {}).get('prefix', 'asgi')}:ops:"


def registry_key() -> str:
    """The sorted set of live reports' keys, each scored by when it expires (epoch seconds)."""
    return f"{key_prefix()}live"


def memory_bytes() -> int:
    """This process's resident memory now (Linux), or its peak elsewhere."""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def ping_database() -> float:
    """One round trip to the database, in seconds (call it in a worker thread; its connection is closed after)."""
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()
    return time.perf_counter() - started


def _common(role: str) -> dict[str, Any]:
    now = time.time()
    return {
        "role": role,
        "host": HOST,
        "pid": os.getpid(),
        "started": STARTED,
        "uptime_s": round(now - STARTED, 1),
        "memory_bytes": memory_bytes(),
        "reported_at": now,
    }


class WebReport:
    """A web process's report; frames per second are worked out between two reports."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None

    def __call__(self) -> dict[str, Any]:
        figures = metrics.hub_figures()
        frames = sum(figures["frames"].values())
        now = time.monotonic()
        rate = None
        if self._last is not None and now > self._last[0]:
            rate = (frames - self._last[1]) / (now - self._last[0])
        self._last = (now, frames)
        return {
            **_common("web"),
            "connections": dict(metrics.open_connections),
            "subscriptions": figures["subscriptions"],
            # Connections the fan-out writes to: never more than the open WebSockets and streams (issue 20).
            "fanout_entries": figures["attached"],
            "frames_total": frames,
            "frames_per_s": None if rate is None else round(rate, 1),
            "fanout_p99_ms": None if figures["p99"] is None else round(figures["p99"] * 1000, 2),
            "slow_clients": figures["behind"],
            "held_back_total": figures["held_back"],
            "resnapshotted_total": figures["resnapshotted"],
            "feed": figures["feed"],
            "step": figures["step"],
        }


def market_report() -> dict[str, Any]:
    market = metrics.market
    return {
        **_common("market"),
        "step": market.step,
        "step_ms": None if market.step_seconds is None else round(market.step_seconds * 1000, 2),
        "last_publish": market.last_publish,
        "publish_failures": market.publish_failures,
        "symbols": market.symbols,
        "alerts_armed": market.alerts_armed,
        "alerts_fired": market.alerts_fired,
        "alert_evaluation_ms": (
            None if market.alert_evaluation_seconds is None else round(market.alert_evaluation_seconds * 1000, 3)
        ),
        "alert_delivery_failures": market.alert_delivery_failures,
    }


async def report(role: str, build) -> None:
    """Write this process's report every TICKER_OPS_REPORT_S until cancelled; Redis outages are logged once."""
    if channel_layer_config() is None:
        return  # one process and no Redis: nothing to share it with
    client = redis_client()
    key = f"{key_prefix()}{role}:{HOST}:{os.getpid()}"
    failing = False
    try:
        while True:
            try:
                ttl = settings.TICKER_OPS_TTL_S
                async with client.pipeline(transaction=False) as pipe:
                    pipe.set(key, json.dumps(build()), ex=ttl)
                    now = time.time()
                    pipe.zremrangebyscore(registry_key(), "-inf", now)  # processes that died without a word
                    pipe.zadd(registry_key(), {key: now + ttl})
                    pipe.expire(registry_key(), ttl)  # a site whose processes are all gone leaves nothing behind
                    await pipe.execute()
                if failing:
                    log.info("operations report written again")
                failing = False
            except Exception as exc:
                if not failing:
                    log.warning("could not write the operations report to Redis: %s", exc)
                failing = True
            stop_if_cancelled()
            await asyncio.sleep(settings.TICKER_OPS_REPORT_S)
    finally:
        with contextlib.suppress(Exception):
            await client.zrem(registry_key(), key)  # a clean exit leaves the view at once
        with contextlib.suppress(Exception):
            await client.delete(key)
        with contextlib.suppress(Exception):
            await client.aclose()


def start_reporting() -> None:
    """Called on every ASGI connection (ticker.ops.health.routes): the first one starts this loop's web report."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    task = _reporters.get(loop)
    if task is None or task.done():
        _reporters[loop] = loop.create_task(report("web", WebReport()), name="ops-report")


async def stop_reporting() -> None:
    """Stop this loop's web report (tests that drive the ASGI application in their own event loop)."""
    task = _reporters.pop(asyncio.get_running_loop(), None)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def reporting(role: str, build):
    """Report for as long as the block runs (the market process)."""
    task = asyncio.create_task(report(role, build), name="ops-report")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- what the operations view reads ------------------------------------------------


async def read_reports() -> dict[str, Any]:
    """Every live process's report, Redis's own figures and the database's, for the operations view."""
    view: dict[str, Any] = {"now": time.time(), "web": [], "market": [], "redis": None, "database": None}
    if channel_layer_config() is None:
        view["web"].append(WebReport()())
        view["redis"] = {"ok": False, "error": "no Redis: the in-memory channel layer (this process only)"}
    else:
        client = redis_client()
        try:
            started = time.perf_counter()
            await client.ping()
            ping_ms = (time.perf_counter() - started) * 1000
            await client.zremrangebyscore(registry_key(), "-inf", time.time())
            keys = await client.zrange(registry_key(), 0, -1)
            values = await client.mget(keys) if keys else []
            for value in values:
                if value is not None:
                    entry = json.loads(value)
                    view.setdefault(entry["role"], []).append(entry)
            info = await client.info()
            view["redis"] = {
                "ok": True,
                "ping_ms": round(ping_ms, 2),
                "version": info.get("redis_version"),
                "used_memory_bytes": info.get("used_memory"),
                "connected_clients": info.get("connected_clients"),
                "uptime_s": info.get("uptime_in_seconds"),
            }
        except Exception as exc:
            view["redis"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            await client.aclose()
    for role in ("web", "market"):
        view[role].sort(key=lambda entry: (entry["host"], entry["pid"]))
    try:
        async with asyncio.timeout(2):
            seconds = await sync_to_async(ping_database, thread_sensitive=False)()
        view["database"] = {"ok": True, "ping_ms": round(seconds * 1000, 2), "vendor": connection.vendor}
    except Exception as exc:
        view["database"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__}
    return view
