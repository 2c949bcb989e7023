"""The one Origin rule (ticker/edge/security.py): the same answer for an HTTP request and a WebSocket handshake."""

from __future__ import annotations

import hypothesis
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client, RequestFactory, override_settings
from hypothesis import given
from hypothesis import strategies as st

from ticker.edge import security

TRUSTED = ["https://ticker.example.com", "https://*.example.org"]


def http_allowed(origin: str | None, host: str, *, secure: bool = False, **meta: str) -> bool:
    """The answer the SSE and long-poll views act on."""
    headers = {"HTTP_HOST": host, **meta}
    if origin is not None:
        headers["HTTP_ORIGIN"] = origin
    request = RequestFactory().get("/api/quotes/stream/", secure=secure, **headers)
    return security.origin_allowed(request.headers.get("Origin"), security.request_origin(request))


def websocket_allowed(origin: str | None, host: str, *, secure: bool = False, **meta: str) -> bool:
    """The answer OriginCheck acts on, for the same headers."""
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    headers += [(name.removeprefix("HTTP_").lower().replace("_", "-").encode(), v.encode()) for name, v in meta.items()]
    return security.websocket_allowed({"type": "websocket", "scheme": "wss" if secure else "ws", "headers": headers})


@pytest.fixture(autouse=True)
def site(settings):
    settings.ALLOWED_HOSTS = ["ticker.test", "127.0.0.1"]
    settings.CSRF_TRUSTED_ORIGINS = TRUSTED


@pytest.mark.parametrize("allowed", [http_allowed, websocket_allowed], ids=["http", "websocket"])
@pytest.mark.parametrize(
    "origin, host, secure, expected",
    [
        (None, "ticker.test", False, True),  # no Origin: a same-origin EventSource or fetch, or not a browser
        ("http://ticker.test", "ticker.test", False, True),
        ("http://ticker.test:8000", "ticker.test:8000", False, True),
        ("http://ticker.test:9999", "ticker.test:8000", False, False),  # the port counts
        ("http://ticker.test", "ticker.test:8000", False, False),
        ("https://ticker.test", "ticker.test", False, False),  # so does the scheme
        ("http://ticker.test", "ticker.test", True, False),
        ("https://ticker.test", "ticker.test", True, True),
        ("http://evil.example", "ticker.test", False, False),
        ("null", "ticker.test", False, False),  # a sandboxed frame or a file: page
        ("", "ticker.test", False, False),  # present but empty is not absent
        ("https://ticker.example.com", "ticker.test", False, True),  # trusted, exactly
        ("https://ticker.example.com:8443", "ticker.test", False, False),
        ("https://feed.example.org", "ticker.test", False, True),  # trusted, a subdomain
        ("http://feed.example.org", "ticker.test", False, False),  # ... over https only
        ("https://example.org.evil.example", "ticker.test", False, False),
    ],
)
def test_one_origin_rule_for_every_transport(allowed, origin, host, secure, expected):
    """An Origin must be the request's own (scheme, host and port) or trusted; a missing one is allowed."""
    assert allowed(origin, host, secure=secure) is expected


@pytest.mark.parametrize("allowed", [http_allowed, websocket_allowed], ids=["http", "websocket"])
def test_behind_a_tls_proxy_the_scheme_comes_from_x_forwarded_proto_only_when_configured(allowed, settings):
    """X-Forwarded-Proto: https makes the request's own origin https:// only with SECURE_PROXY_SSL_HEADER set."""
    forwarded = {"HTTP_X_FORWARDED_PROTO": "https"}
    assert not allowed("https://ticker.test", "ticker.test", **forwarded)
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert allowed("https://ticker.test", "ticker.test", **forwarded)
    assert not allowed("http://ticker.test", "ticker.test", **forwarded)


def test_a_websocket_to_a_host_outside_allowed_hosts_is_refused():
    """As Django answers any HTTP request for such a Host with 400, the handshake is refused (DNS rebinding)."""
    assert not websocket_allowed("http://rebound.example", "rebound.example")
    assert not websocket_allowed(None, "rebound.example")
    assert not security.websocket_allowed({"type": "websocket", "scheme": "ws", "headers": []})  # no Host at all


def _handshake(peer: str, forwarded_for: str | None = None) -> dict:
    headers = [(b"host", b"127.0.0.1")]
    if forwarded_for is not None:
        headers.append((b"x-forwarded-for", forwarded_for.encode()))
    return {"type": "websocket", "client": [peer, 50000], "headers": headers}


def test_a_websocket_handshake_has_the_client_address_an_http_request_has(settings):
    """X-Forwarded-For counts only behind trusted proxies, and then the entry the outermost one wrote (issue 21)."""
    spoofed = _handshake("192.0.2.1", "203.0.113.5")
    assert security.scope_client_address(spoofed) == "192.0.2.1"
    settings.TICKER_TRUSTED_PROXIES = 1
    assert security.scope_client_address(_handshake("10.0.0.2", "198.51.100.1, 203.0.113.5")) == "203.0.113.5"
    assert security.scope_client_address(_handshake("10.0.0.2")) == "10.0.0.2"  # not through the proxy
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.5")
    assert security.client_address(request) == "203.0.113.5"
    assert security.scope_client_address({"type": "websocket", "headers": []}) is None  # no peer (a Unix socket)


def test_readyz_details_and_metrics_follow_the_trusted_client_address_not_the_proxy():
    """Behind compose's nginx (TICKER_TRUSTED_PROXIES=1, nginx's address in TICKER_METRICS_ALLOW's private ranges) a
    public client's request carries its address in X-Forwarded-For: /metrics and /readyz's details are refused
    to it; the health check and Prometheus, which reach the process directly, are still let in."""
    import ipaddress

    from django.test import override_settings

    from ticker.ops import health

    def scope(peer: str, forwarded: str | None = None) -> dict:
        headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
        return {"type": "http", "client": (peer, 40000), "headers": headers}

    private = [ipaddress.ip_network("172.16.0.0/12"), ipaddress.ip_network("127.0.0.1/32")]
    with override_settings(TICKER_TRUSTED_PROXIES=1, TICKER_METRICS_NETWORKS=private, TICKER_METRICS_TOKEN=""):
        refusal = health.metrics_refusal(scope("172.18.0.5", "203.0.113.9"))
        assert refusal is not None and "203.0.113.9" in refusal
        assert health.metrics_refusal(scope("172.18.0.5", "198.51.100.1, 203.0.113.9")) is not None
        assert health.metrics_refusal(scope("172.18.0.7")) is None  # Prometheus on the compose network
        assert health.metrics_refusal(scope("127.0.0.1")) is None  # the container's own health check
    with override_settings(TICKER_TRUSTED_PROXIES=0, TICKER_METRICS_NETWORKS=private, TICKER_METRICS_TOKEN=""):
        # Without trusted proxies X-Forwarded-For is not believed either way: the peer decides.
        assert health.metrics_refusal(scope("172.18.0.5", "203.0.113.9")) is None
        assert health.metrics_refusal(scope("203.0.113.9", "127.0.0.1")) is not None


# Hosts and origins drawn from the names the rule tells apart: allowed or not, a port or none, the scheme,
# trusted exactly or by a wildcard, and look-alikes.
names = st.sampled_from(["ticker.test", "127.0.0.1", "ticker.example.com", "feed.example.org", "example.org"])
names |= st.sampled_from(["evil.example", "example.org.evil.example", "TICKER.test", "ticker.test."])
ports = st.sampled_from(["", ":80", ":443", ":8000", ":8443"])
hosts = st.builds(lambda name, port: name + port, names, ports)
origins = st.none() | st.sampled_from(["", "null", "http://", "ticker.test"])
origins |= st.builds(lambda scheme, host: scheme + host, st.sampled_from(["http://", "https://", "ws://"]), hosts)
origins |= st.text(max_size=12)


async def _accepting(scope, receive, send) -> None:
    """Stands in for QuoteConsumer behind the check (the question is only whether the check lets a handshake
    through): accepts, and ends when the client goes. A plain ASGI app: a Channels consumer closes the thread's
    old database connections on every message, which this test, without a database, may not touch."""
    while (message := await receive())["type"] != "websocket.disconnect":
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})


def _websocket_opens(origin: str | None, host: str) -> bool:
    """Whether the WebSocket routes' Origin check (OriginCheck, as config/asgi.py wraps them) lets the handshake
    through, as channels' test communicator makes it."""
    headers = [(b"host", host.encode())] + ([] if origin is None else [(b"origin", origin.encode())])

    async def handshake() -> bool:
        communicator = WebsocketCommunicator(security.OriginCheck(_accepting), "/ws/quotes/", headers)
        connected, _ = await communicator.connect()
        if connected:
            await communicator.disconnect()
        return connected

    return async_to_sync(handshake)()


def _http_opens(origin: str | None, host: str) -> bool:
    """Whether the long-poll view (through Django's whole middleware stack) gets past the Origin check: a
    ``wait`` it refuses is its next check, so no hub is needed to tell."""
    headers = {"HTTP_HOST": host} | ({} if origin is None else {"HTTP_ORIGIN": origin})
    response = Client().get("/api/quotes/?wait=never", **headers)
    if response.status_code == 400 and response.headers["Content-Type"].startswith("application/json"):
        return response.json()["code"] == "bad_wait"
    assert response.status_code in (400, 403), response  # 400: a Host outside ALLOWED_HOSTS
    return False


@override_settings(ALLOWED_HOSTS=["ticker.test", "127.0.0.1"], CSRF_TRUSTED_ORIGINS=TRUSTED)
@hypothesis.settings(max_examples=200, deadline=None)
@given(origins, hosts)
def test_for_any_origin_and_host_a_websocket_and_an_http_stream_are_both_let_in_or_both_refused(origin, host):
    """The same Origin rule on every transport, through the real middleware and views: no Origin/Host pair
    opens one and not the other."""
    assert _websocket_opens(origin, host) == _http_opens(origin, host)
