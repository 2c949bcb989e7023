"""Who may use the site: one Origin rule for every transport, and the address a failed admin login counts against.

The Origin rule is Django's own CSRF rule (``CsrfViewMiddleware._origin_verified``
in Django 5.2), applied to the read-only feed as well: an ``Origin`` that is
present must be the request's own origin (scheme, host *and* port) or one of
``CSRF_TRUSTED_ORIGINS`` (``https://*.example.com`` for every subdomain). A
missing ``Origin`` is allowed: browsers send none on same-origin GETs
(EventSource, fetch) and always send one on a WebSocket handshake, so only a
program that is not a browser omits it, and such a program could send any
Origin it likes. The rule protects browsers' visitors, not the feed.

The HTTP views call ``origin_allowed`` with ``request_origin(request)``; the
WebSocket goes through ``OriginCheck``, an ASGI middleware that reads the same
two things from the handshake's scope (it replaces channels'
``AllowedHostsOriginValidator``, which compares host names only, ignores the
port and refuses a missing Origin).
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.http.request import is_same_domain, split_domain_port, validate_host


def origin_allowed(origin: str | None, own: str | None) -> bool:
    """True when a request whose ``Origin`` header is ``origin`` (None: absent) may read the feed.

    ``own`` is the request's own origin ("https://example.com:8443"), or None
    when its Host is not one of ALLOWED_HOSTS (then only trusted origins pass).
    """
    if origin is None:
        return True
    if own is not None and origin == own:
        return True
    trusted = settings.CSRF_TRUSTED_ORIGINS
    if origin in {o for o in trusted if "*" not in o}:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    return any(
        is_same_domain(parsed.netloc, pattern.netloc.lstrip("*"))
        for pattern in (urlsplit(o) for o in trusted if "*" in o)
        if pattern.scheme == parsed.scheme
    )


def request_origin(request: HttpRequest) -> str:
    """An HTTP request's own origin, as Django's CSRF check forms it (the Host was validated by then)."""
    return f"{'https' if request.is_secure() else 'http'}://{request.get_host()}"


def _meta(scope: dict[str, Any]) -> dict[str, str]:
    """A handshake's headers as Django's request.META holds them (ASGIRequest: repeated headers joined by ",")."""
    meta: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key = "HTTP_" + name.decode("latin1").upper().replace("-", "_")
        text = value.decode("latin1")
        meta[key] = f"{meta[key]},{text}" if key in meta else text
    return meta


def _allowed_hosts() -> list[str]:
    # As HttpRequest.get_host: with DEBUG and no ALLOWED_HOSTS, the local names.
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [".localhost", "127.0.0.1", "[::1]"]
    return settings.ALLOWED_HOSTS


def scope_host(scope: dict[str, Any]) -> str | None:
    """A WebSocket handshake's Host (as HttpRequest.get_host reads it), or None when it is not in ALLOWED_HOSTS."""
    meta = _meta(scope)
    if settings.USE_X_FORWARDED_HOST and "HTTP_X_FORWARDED_HOST" in meta:
        host = meta["HTTP_X_FORWARDED_HOST"]
    else:
        host = meta.get("HTTP_HOST")
    if not host:
        return None
    domain, _ = split_domain_port(host)
    return host if domain and validate_host(domain, _allowed_hosts()) else None


def scope_origin(scope: dict[str, Any]) -> str | None:
    """A WebSocket handshake's own origin, or None when its Host is not one of ALLOWED_HOSTS.

    The scheme is "https" for wss://, or, when SECURE_PROXY_SSL_HEADER is set
    (behind a TLS proxy), when that header says so: HttpRequest.scheme's rule.
    """
    host = scope_host(scope)
    if host is None:
        return None
    secure = scope.get("scheme") in ("wss", "https")
    if settings.SECURE_PROXY_SSL_HEADER:
        try:
            header, secure_value = settings.SECURE_PROXY_SSL_HEADER
        except ValueError:
            raise ImproperlyConfigured("SECURE_PROXY_SSL_HEADER must be a tuple of two strings.") from None
        if (value := _meta(scope).get(header)) is not None:
            secure = value.split(",", 1)[0].strip() == secure_value
    return f"{'https' if secure else 'http'}://{host}"


def websocket_allowed(scope: dict[str, Any]) -> bool:
    """Whether a WebSocket handshake may open the feed: a Host in ALLOWED_HOSTS (as for every HTTP request,
    which Django answers 400 otherwise) and the Origin rule above."""
    own = scope_origin(scope)
    if own is None:
        return False
    origin = _meta(scope).get("HTTP_ORIGIN")
    return origin_allowed(origin, own)


class _Denier(WebsocketDenier):
    """channels' denier without the channel layer: it refuses and ends, so it has nothing to receive.

    WebsocketDenier is a consumer on the default layer, so each refused handshake made a layer channel and
    ran a ``receive()`` beside the hub's until its socket was gone: Redis work for nobody, and in the suite a
    second receiver sharing channels_redis' receive lock with the hub.
    """

    channel_layer_alias = None


class OriginCheck:
    """ASGI middleware in front of the WebSocket routes: a handshake ``websocket_allowed`` refuses gets HTTP 403."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not websocket_allowed(scope):
            # Closing before accepting is answered by daphne with 403 before the upgrade.
            return await _Denier()(scope, receive, send)
        return await self.application(scope, receive, send)


def client_address(request: HttpRequest) -> str | None:
    """The address a failed admin login is counted against (django-axes' AXES_CLIENT_IP_CALLABLE), and an
    SSE stream or long-poll's share of the connection cap (ticker/edge/admission.py, issue 21).

    REMOTE_ADDR, the peer of the TCP connection, unless TICKER_TRUSTED_PROXIES
    says how many proxies stand in front of the web processes: then the entry
    of X-Forwarded-For that the outermost of them wrote (each proxy appends the
    address it was connected from, as nginx's $proxy_add_x_forwarded_for does,
    so that entry is counted from the right and anything a client wrote itself
    lies to its left). Without trusted proxies X-Forwarded-For is ignored, so a
    client cannot spoof its address by sending one.
    """
    return _trusted_address(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR", ""))


def scope_client_address(scope: dict[str, Any]) -> str | None:
    """A WebSocket handshake's client address by ``client_address``'s rule: the scope's peer, or the entry of
    X-Forwarded-For (read from the handshake's headers as Django would) that the trusted proxies make count."""
    client = scope.get("client")
    remote = client[0] if client else None
    forwarded = _meta(scope).get("HTTP_X_FORWARDED_FOR", "") if settings.TICKER_TRUSTED_PROXIES else ""
    return _trusted_address(remote, forwarded)


def _trusted_address(remote: str | None, forwarded_for: str) -> str | None:
    """The client's address from the TCP peer ``remote`` and the X-Forwarded-For header (``client_address``)."""
    proxies = settings.TICKER_TRUSTED_PROXIES
    if not proxies:
        return remote
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    if len(hops) < proxies:
        # Fewer hops than proxies: the request did not come through all of them. Count it against the peer.
        return remote
    hop = hops[-proxies]
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        return remote
