"""/healthz, /readyz and /metrics: answered in front of Django, whatever DJANGO_ALLOWED_HOSTS says.

Health checks and Prometheus reach a web process by its own address (``127.0.0.1:8000`` inside its
container, ``web:8000`` on the compose network), a Host that production's DJANGO_ALLOWED_HOSTS rightly
refuses (400 DisallowedHost; issue 13). So these three paths are routed by a small ASGI app wrapped around
the whole site (config/asgi.py) before Django sees the request: none of them reads the Host header, and
/metrics has its own access rule (TICKER_METRICS_ALLOW networks, or TICKER_METRICS_TOKEN).

- ``/healthz``: 200 while the process answers (liveness: restart it if this fails).
- ``/readyz``: 200 while the feed is live and the database answers; otherwise 503 with the reasons as a JSON
  list of short codes (readiness: send it no clients meanwhile); callers that may read /metrics also get
  "details", the reasons in words with the error text.
- ``/metrics``: this process's Prometheus metrics (ticker.ops.metrics).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging

from asgiref.sync import sync_to_async
from django.conf import settings

from ticker.edge import security
from ticker.ops import metrics
from ticker.ops import registry as ops

log = logging.getLogger(__name__)

# /readyz answers within about this long (compose's check gives it 5 s): the hub's first snapshot and the
# database ping each get this long.
READY_WAIT_S = 2.0
PATHS = ("/healthz", "/readyz", "/metrics")


def routes(app):
    """The site's ASGI application with /healthz, /readyz and /metrics answered in front of it."""

    async def application(scope, receive, send):
        ops.start_reporting()  # daphne has no lifespan events: the first connection of any kind starts the report
        if scope["type"] == "http" and scope["path"] in PATHS:
            return await _answer(scope, send)
        return await app(scope, receive, send)

    return application


async def _answer(scope, send) -> None:
    if scope["method"] not in ("GET", "HEAD"):
        return await _respond(send, scope, 405, b"GET or HEAD only\n", extra=[(b"allow", b"GET, HEAD")])
    path = scope["path"]
    if path == "/healthz":
        return await _respond(send, scope, 200, b'{"status": "ok"}', json_body=True)
    if path == "/readyz":
        reasons = await not_ready()
        answer = {"status": "ready" if not reasons else "not ready", "reasons": [code for code, _ in reasons]}
        # Issue 21: the details name hosts and carry driver errors ("OperationalError: connection to server at
        # ..."), and nginx forwards /readyz to the public. So everyone gets the short codes, and only a caller
        # that may read /metrics (an operator, Prometheus, the container's own health check) the details.
        if metrics_refusal(scope) is None:
            answer["details"] = [detail for _, detail in reasons]
        body = json.dumps(answer).encode()
        return await _respond(send, scope, 503 if reasons else 200, body, json_body=True)
    if (refusal := metrics_refusal(scope)) is not None:
        return await _respond(send, scope, 403, refusal.encode() + b"\n")
    return await _respond(send, scope, 200, metrics.exposition(), content_type=metrics.CONTENT_TYPE.encode())


async def not_ready() -> list[tuple[str, str]]:
    """Why this process should not be sent clients now, as (code, detail) pairs (empty: ready).

    The codes are fixed and safe for anyone to read (docs/operations.md lists them); the details may
    carry host names and exception text.
    """
    from ticker.hub import FeedUnavailable, get_hub

    reasons, database = [], asyncio.ensure_future(_database_answers())
    try:
        hub = await get_hub(wait_s=READY_WAIT_S)
    except FeedUnavailable:
        reasons.append(
            ("feed_unavailable", "feed: no quotes yet (neither the channel layer nor the database answered)")
        )
    else:
        if hub.feed != "live":
            if not hub.follower.connected:
                reasons.append(
                    ("feed_disconnected", "feed: not receiving from the channel layer (is Redis up? REDIS_URL)")
                )
            else:
                silent = asyncio.get_running_loop().time() - hub.follower.last_batch_at
                reasons.append(
                    ("feed_stale", f"feed: no batch from the market for {silent:.1f} s (is run_market running?)")
                )
    if (problem := await database) is not None:
        reasons.append(("database_unavailable", f"database: {problem}"))
    return reasons


async def _database_answers() -> str | None:
    try:
        async with asyncio.timeout(READY_WAIT_S):
            await sync_to_async(ops.ping_database, thread_sensitive=False)()
    except TimeoutError:
        return f"no answer within {READY_WAIT_S:g} s"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def metrics_refusal(scope) -> str | None:
    """None when this request may read /metrics; otherwise why not."""
    token = settings.TICKER_METRICS_TOKEN
    if token:
        given = dict(scope.get("headers", ())).get(b"authorization", b"").decode("latin-1")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return None
    # The client by the same rule as everywhere else (ticker.edge.security): behind TICKER_TRUSTED_PROXIES, the address
    # the proxy says it was connected from, not the proxy's own. Else every request through compose's nginx, whose
    # address is in the allowed private ranges, would read the details of /readyz (review of issue 21).
    client = security.scope_client_address(scope)
    if client:
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            address = None
        if address is not None:
            if getattr(address, "ipv4_mapped", None) is not None:
                address = address.ipv4_mapped
            if any(address in network for network in settings.TICKER_METRICS_NETWORKS):
                return None
    return (
        "metrics are not public: read them from a network in TICKER_METRICS_ALLOW"
        + (" or send Authorization: Bearer <TICKER_METRICS_TOKEN>" if token else "")
        + f" (this client: {client or 'unknown'})"
    )


async def _respond(
    send,
    scope,
    status: int,
    body: bytes,
    *,
    json_body: bool = False,
    content_type: bytes = b"text/plain; charset=utf-8",
    extra: list | None = None,
) -> None:
    headers = [
        (b"content-type", b"application/json" if json_body else content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
