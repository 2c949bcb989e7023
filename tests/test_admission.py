"""Admission control on real processes: a daphne capped at 50 connections (TICKER_MAX_CONNECTIONS), a market, Redis.

The 51st connection is told to come back later (a WebSocket closed with 1013, SSE and long-poll
503 with Retry-After) while the 50 inside keep receiving every update; the count is exact, so a
connection that leaves, by any way out, makes room for exactly one more.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
import websockets

from ticker.edge import admission

from .clients import Follower, flood, follow, get_json, recv_data, sample, samples, stop_following, until
from .processes import running_site, site_fixture

pytestmark = pytest.mark.processes

CAP = 50


def capped(cap: int) -> dict[str, str]:
    """A process capped at ``cap`` connections, with no share per address: these tests' clients all come from
    127.0.0.1, and test the process's cap alone (the share per address: tests/test_fair_share.py)."""
    return {"TICKER_MAX_CONNECTIONS": str(cap), "TICKER_MAX_CONNECTIONS_PER_ADDRESS": "0"}


site = site_fixture(market=True, env=capped(CAP))


async def refused_websocket(base: str) -> tuple[int | None, str]:
    """Open a WebSocket and subscribe; the close code and reason it gets (None if it got a snapshot instead)."""
    async with websockets.connect(base.replace("http", "ws") + "/ws/quotes/", origin=base) as ws:
        try:
            await ws.send(json.dumps({"action": "subscribe", "symbols": ["*"]}))
            frame = await recv_data(ws, limit=15)
        except websockets.ConnectionClosed:
            return ws.close_code, ws.close_reason
        assert frame["type"] == "snapshot", frame
        return None, ""


def http_refusal(url: str) -> tuple[int, str | None, dict]:
    """GET url expecting an HTTP error: (status, Retry-After, JSON body)."""
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=30)
    return refused.value.code, refused.value.headers["Retry-After"], json.loads(refused.value.read())


async def admitted(base: str) -> tuple[Follower, asyncio.Task, int]:
    """A new WebSocket follower once the process has room: tried until it gets a snapshot; and how many times it
    was refused (1013) first, which the server counts as refusals too.

    A slot frees when daphne has seen the leaving client's close, a moment after the client
    sent it; the loop retries the way the protocol tells clients to (after a 1013, again).
    """
    deadline = asyncio.get_running_loop().time() + 30  # generous: the machine is shared
    refused = 0
    while True:
        follower, ready = Follower(base), asyncio.Event()
        task = asyncio.create_task(follower.run(ready))
        waiting = asyncio.ensure_future(ready.wait())
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if ready.is_set():
            return follower, task, refused
        assert follower.close_code == 1013, f"refused with {follower.close_code}, not 1013"
        refused += 1
        assert asyncio.get_running_loop().time() < deadline, "no slot came free within 30 s"
        await asyncio.sleep(0.2)


def test_the_51st_websocket_is_told_to_come_back_while_the_50_get_every_update(site):
    """At the cap a WebSocket is closed with 1013, SSE and long-poll get 503 with Retry-After; the 50 lose nothing."""

    async def main():
        followers, tasks = await follow(site.base, CAP)
        try:
            refused_at = len(followers[0].frames)
            code, reason = await refused_websocket(site.base)
            assert (code, reason) == (1013, "server full: try again in 5 s")
            for path in ("/api/quotes/stream/?symbols=AAPL", "/api/quotes/?since=0&wait=1"):
                status, retry_after, body = await asyncio.to_thread(http_refusal, site.base + path)
                assert (status, retry_after, body["code"]) == (503, "5", "server_full"), (path, body)
                assert f"limit of {CAP} live connections" in body["message"]
            # Plain polling is not counted (ticker/edge/admission.py): it still answers.
            assert get_json(site.base, "/api/quotes/?symbols=AAPL")["quotes"][0]["symbol"] == "AAPL"
            # The 50 kept receiving while the others were refused.
            await until(
                lambda: all(len(f.quotes_since(0)) > refused_at + 4 for f in followers),
                limit=15,
                what="the admitted clients' next quotes",
            )
            # One leaves; exactly one more gets in, and the one after it is refused again.
            leaving = tasks.pop()
            followers.pop()
            await stop_following([leaving])
            newcomer, task, _ = await admitted(site.base)
            followers.append(newcomer)
            tasks.append(task)
            assert (await refused_websocket(site.base))[0] == 1013

            assert site.stop("market") == 0  # its last step stored: nothing changes from here
            stored = {q["symbol"]: q["seq"] for q in get_json(site.base, "/api/quotes/")["quotes"]}
            await until(lambda: all(f.seq == stored for f in followers), limit=15, what="every client's last update")
        finally:
            await stop_following(tasks)
        assert [f.problems() for f in followers] == [[] for _ in followers]

    asyncio.run(main())


def _open_long_poll(port: int, since: int) -> socket.socket:
    """A long poll left waiting (wait=30, the market stopped), on a raw socket so the test can drop it mid-wait."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"GET /api/quotes/?since={since}&wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def _open_stream(port: int) -> socket.socket:
    """An SSE stream, read up to its first event, on a raw socket so the test can drop it."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /api/quotes/stream/?symbols=AAPL HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    sock.settimeout(15)
    head = b""
    while b"event: snapshot" not in head:
        chunk = sock.recv(65536)
        assert chunk, f"the stream closed: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return sock


def test_every_way_out_gives_the_slot_back(site):
    """A long poll dropped mid-wait, an SSE stream dropped, a WebSocket closed for flooding: each frees one slot."""

    async def main():
        followers, tasks = await follow(site.base, CAP - 2)
        assert site.stop("market") == 0  # nothing changes from here: the long poll waits its 30 s
        step = get_json(site.base, "/api/quotes/")["step"]
        poll = await asyncio.to_thread(_open_long_poll, site.port, step)
        stream = await asyncio.to_thread(_open_stream, site.port)
        extra: list[asyncio.Task] = []
        try:
            # The long poll is counted once it waits: wait for the process to be full.
            await until_refused(site.base)

            poll.close()  # the client leaves mid-wait: Django cancels the view
            _, task, _ = await admitted(site.base)
            extra.append(task)
            await until_refused(site.base)

            stream.close()  # the reader goes: the stream ends
            _, task, _ = await admitted(site.base)
            extra.append(task)
            await until_refused(site.base)

            # A flooding client is closed with 1008 (the rate limit): its slot comes back too.
            tasks.remove(victim := tasks[0])
            await stop_following([victim])
            assert await flooded(site.base) == 1008
            _, task, _ = await admitted(site.base)
            extra.append(task)
            assert (await refused_websocket(site.base))[0] == 1013
        finally:
            poll.close()
            stream.close()
            await stop_following(tasks + extra)

    asyncio.run(main())


async def until_refused(base: str) -> None:
    """Wait until the process is full: a new WebSocket gets 1013 (a connection that just came takes a moment to count).

    Up to 30 s: the machine is shared, and a slot is only counted once daphne has run the view or consumer.
    """
    deadline = asyncio.get_running_loop().time() + 30
    while (await refused_websocket(base))[0] != 1013:
        assert asyncio.get_running_loop().time() < deadline, "the process never filled up"
        await asyncio.sleep(0.2)


async def flooded(base: str) -> int:
    """A client that sends 100 pings at once, once admitted: the close code it gets."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        async with websockets.connect(base.replace("http", "ws") + "/ws/quotes/", origin=base) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await flood(ws, 100)
                while True:
                    await asyncio.wait_for(ws.recv(), 15)
        if ws.close_code != 1013:
            return ws.close_code
        assert asyncio.get_running_loop().time() < deadline, "no slot came free for the flooding client"
        await asyncio.sleep(0.2)


@pytest.mark.browser
def test_the_dashboard_waits_while_the_server_is_full_and_gets_in_once_a_slot_frees(tmp_path, redis_server):
    """A full process: the badge says busy (still on WebSocket, no fallback); once a slot frees, prices go live."""
    from playwright.sync_api import expect, sync_playwright

    from .test_browser import CHROMIUM, CHROMIUM_ARGS, wait_for_seq_above

    with running_site(tmp_path, redis_server.url, market=True, env=capped(2)) as site:
        holders = [_open_stream(site.port), _open_stream(site.port)]  # the two slots, taken
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("console", lambda message: print("console:", message.text))  # shown if the test fails
                # Every state and transport the badge shows, in order (a brief "connecting" is easy to miss).
                page.add_init_script(
                    """document.addEventListener("DOMContentLoaded", () => {
                      window.badgeStates = [];
                      const badge = document.getElementById("badge");
                      const seen = () => window.badgeStates.push([badge.dataset.state, badge.dataset.transport]);
                      new MutationObserver(seen).observe(badge, { attributes: true, attributeFilter: ["data-state"] });
                    });"""
                )
                page.goto(site.base + "/")
                badge = page.locator("#badge")
                # Bounds: the first refusal comes within a second; 15 s allows a loaded machine.
                expect(badge).to_have_attribute("data-state", "busy", timeout=15_000)
                expect(badge).to_have_attribute("data-transport", "websocket")
                expect(badge).to_contain_text("server busy, retry in")
                expect(page.locator("#feed-banner")).to_contain_text("Server busy, retrying.")
                # It keeps waiting on WebSocket: a second refusal (5 to 7.5 s after the first) leaves it there.
                page.wait_for_function(
                    "() => window.badgeStates.filter(([state]) => state === 'busy').length >= 2", timeout=20_000
                )
                assert {transport for _, transport in page.evaluate("window.badgeStates")} == {"websocket"}

                holders.pop().close()  # one client leaves
                # The next retry is at most 7.5 s away (Retry-After 5 s plus jitter), then the snapshot.
                expect(badge).to_have_attribute("data-state", "live", timeout=30_000)
                expect(badge).to_contain_text("WebSocket")
                expect(page.locator("#feed-banner")).to_be_hidden()
                seq = int(page.locator('tr[data-symbol="AAPL"]').get_attribute("data-seq") or -1)
                wait_for_seq_above(page, "AAPL", seq)
                assert errors == [], f"the page raised: {errors}"
                browser.close()
        finally:
            for sock in holders:
                sock.close()


def test_behind_nginx_a_full_replica_passes_the_request_to_the_next(tmp_path, redis_server):
    """deploy/nginx.conf for real: an SSE request a full replica answers 503 goes to the other; all full, a 503."""
    from .conftest import free_port, wait_for
    from .processes import serves_quotes
    from .test_scaleout import NGINX, nginx_config

    with running_site(tmp_path, redis_server.url, market=True, env=capped(1)) as site:
        second = site.start_web(name="web2")
        listen = free_port()
        config = nginx_config(tmp_path, listen, [site.port, int(second.rsplit(":", 1)[1])])
        nginx = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(config), "-g", "daemon off;"])
        holders = []
        try:
            wait_for(lambda: serves_quotes(f"http://127.0.0.1:{listen}"), timeout=15, what="nginx to proxy")
            holders.append(_open_stream(site.port))  # the first replica is full, taken directly
            holders.append(_open_stream(listen))  # through nginx: the other replica serves it
            # Both full now: nginx tries each (each logs its 503: a full replica passes the request on), and the
            # client gets the last 503 as it was.
            status, retry_after, body = http_refusal(f"http://127.0.0.1:{listen}/api/quotes/stream/?symbols=AAPL")
            assert (status, retry_after, body["code"]) == (503, "5", "server_full")
            logs = [(tmp_path / f"{name}.log").read_text() for name in ("web", "web2")]
            assert all(log.count('"GET /api/quotes/stream/?symbols=AAPL" 503') >= 1 for log in logs), (
                "nginx did not try both"
            )
            # Polling is not capped and no replica was marked down (max_fails=0): it is still served.
            assert get_json(f"http://127.0.0.1:{listen}", "/api/quotes/?symbols=AAPL")["quotes"]
            # A WebSocket through nginx to a full replica: closed with 1013, passed through unchanged.
            code, _ = asyncio.run(refused_websocket(f"http://127.0.0.1:{listen}"))
            assert code == 1013
            holders.pop(0).close()  # a slot frees on the first replica
            holders.append(_open_stream(listen))
        finally:
            for sock in holders:
                sock.close()
            nginx.terminate()
            nginx.wait(10)


# --- A fair share per address (issue 21): TICKER_MAX_CONNECTIONS_PER_ADDRESS ---------------------------------

SHARE = 10
# A second client address: Linux routes all of 127.0.0.0/8 to the loopback interface, so a socket bound to
# 127.0.0.2 reaches daphne on 127.0.0.1 as another client would.
OTHER_ADDRESS = "127.0.0.2"
ADDRESS_FULL_REASON = f"too many connections from your address ({SHARE}): try again in 5 s"


def _request(
    port: int, path: str, *, source: str = "127.0.0.1", forwarded_for: str | None = None
) -> tuple[int, dict[str, str], bytes, socket.socket]:
    """GET ``path`` from the address ``source``: (status, headers, body, socket).

    An event stream is read up to its first event (the snapshot) and left open: the socket holds it until
    closed. Any other answer is read whole (Content-Length).
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=15, source_address=(source, 0))
    extra = f"X-Forwarded-For: {forwarded_for}\r\n" if forwarded_for else ""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed before answering: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    status = int(status_line.split()[1])
    streaming = headers.get("content-type", "").startswith("text/event-stream")
    while (b"event: snapshot" not in body) if streaming else (len(body) < int(headers["content-length"])):
        chunk = sock.recv(65536)
        assert chunk, f"the answer ended early: {head!r} {body!r}"
        body += chunk
    return status, headers, body, sock


def _held_stream(port: int, *, source: str = "127.0.0.1", forwarded_for: str | None = None) -> socket.socket:
    """An SSE stream admitted and held open (its snapshot read) from ``source``."""
    status, _, body, sock = _request(
        port, "/api/quotes/stream/?symbols=AAPL", source=source, forwarded_for=forwarded_for
    )
    if status != 200:
        sock.close()
        raise AssertionError(f"the stream was refused: {status} {body!r}")
    return sock


def _address_full(port: int, path: str, **sender: str) -> None:
    """``path`` from that sender is refused for its address: 503, Retry-After 5, ``address_full``."""
    status, headers, body, sock = _request(port, path, **sender)
    sock.close()
    assert (status, headers.get("retry-after")) == (503, "5"), f"{path} from {sender}: {status} {body[:200]!r}"
    error = json.loads(body)
    assert error["code"] == "address_full", error
    assert error["message"].startswith("Too many connections from your address"), error


async def _websocket(
    base: str, *, source: str = "127.0.0.1", forwarded_for: str | None = None
) -> tuple[int | None, str]:
    """A WebSocket from ``source`` that subscribes: (None, "") once it has its snapshot and a quotes frame
    (live quotes), else the close code and reason it got."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    url = base.replace("http", "ws") + "/ws/quotes/"
    async with websockets.connect(url, origin=base, local_addr=(source, 0), additional_headers=headers) as ws:
        try:
            await ws.send(json.dumps({"action": "subscribe", "symbols": ["*"]}))
            assert (await recv_data(ws, limit=15))["type"] == "snapshot"
            assert (await recv_data(ws, limit=15))["type"] == "quotes"
        except websockets.ConnectionClosed:
            return ws.close_code, ws.close_reason
        return None, ""


def test_one_address_holds_at_most_its_share_while_another_address_still_gets_in(tmp_path, redis_server):
    """At 10 connections from 127.0.0.1 (cap 100) its next WebSocket gets 1013, its SSE and long-poll 503
    ``address_full``, a spoofed X-Forwarded-For changes nothing; 127.0.0.2 still gets live quotes; one of
    the 10 leaving lets exactly one more in from 127.0.0.1."""
    env = {"TICKER_MAX_CONNECTIONS": "100", "TICKER_MAX_CONNECTIONS_PER_ADDRESS": str(SHARE)}
    with running_site(tmp_path, redis_server.url, market=True, env=env) as site:

        async def main():
            # The share across transports: 7 WebSockets and 3 SSE streams from 127.0.0.1.
            followers, tasks = await follow(site.base, SHARE - 3)
            streams = [await asyncio.to_thread(_held_stream, site.port) for _ in range(3)]
            extra: list[asyncio.Task] = []
            try:
                assert await _websocket(site.base) == (1013, ADDRESS_FULL_REASON)
                for path in ("/api/quotes/stream/?symbols=AAPL", "/api/quotes/?since=0&wait=1"):
                    await asyncio.to_thread(_address_full, site.port, path)
                # X-Forwarded-For is ignored without TICKER_TRUSTED_PROXIES: writing one does not dodge the share.
                spoofed = {"forwarded_for": "203.0.113.9"}
                await asyncio.to_thread(_address_full, site.port, "/api/quotes/stream/?symbols=AAPL", **spoofed)
                assert await _websocket(site.base, **spoofed) == (1013, ADDRESS_FULL_REASON)
                # Polling is not counted: it still answers.
                assert get_json(site.base, "/api/quotes/?symbols=AAPL")["quotes"][0]["symbol"] == "AAPL"

                # Another address is not held back by 127.0.0.1's share.
                assert await _websocket(site.base, source=OTHER_ADDRESS) == (None, "")
                other = await asyncio.to_thread(_held_stream, site.port, source=OTHER_ADDRESS)
                streams.append(other)
                status, _, body, sock = await asyncio.to_thread(
                    _request, site.port, "/api/quotes/?since=0&wait=1", source=OTHER_ADDRESS
                )
                sock.close()
                assert status == 200 and json.loads(body)["quotes"], body

                # One of the 10 leaves: exactly one more gets in from 127.0.0.1, and the next is refused again.
                streams.pop(0).close()
                # Tried until the stream's slot is free: a try before daphne saw the close is refused, and counted.
                _, task, retried = await admitted(site.base)
                extra.append(task)
                assert await _websocket(site.base) == (1013, ADDRESS_FULL_REASON)
                assert [f.problems() for f in followers] == [[] for _ in followers]
                # Every refusal counted by transport and reason, none as server_full (the cap was never reached).
                found = samples(site.base + "/metrics")
                refused = {
                    (transport, reason): sample(found, "ticker_refused_connections_total", transport=t, reason=reason)
                    for transport, t in (("ws", "websocket"), ("sse", "sse"), ("lp", "long_poll"))
                    for reason in ("address_full", "server_full")
                }
                assert refused == {
                    ("ws", "address_full"): 3 + retried,
                    ("sse", "address_full"): 2,
                    ("lp", "address_full"): 1,
                    ("ws", "server_full"): 0,
                    ("sse", "server_full"): 0,
                    ("lp", "server_full"): 0,
                }
            finally:
                for sock in streams:
                    sock.close()
                await stop_following(tasks + extra)

        asyncio.run(main())


def test_behind_trusted_proxies_the_forwarded_address_is_what_counts(tmp_path, redis_server):
    """With TICKER_TRUSTED_PROXIES=1 the proxy's X-Forwarded-For entry is the key: 127.0.0.1 (the proxy) serves
    many clients, one forwarded address is held to its share, an entry a client wrote to the left does not
    dodge it, and an IPv6 client counts for its /64."""
    env = {"TICKER_MAX_CONNECTIONS": "100", "TICKER_MAX_CONNECTIONS_PER_ADDRESS": "2", "TICKER_TRUSTED_PROXIES": "1"}
    with running_site(tmp_path, redis_server.url, market=True, env=env) as site:
        held: list[socket.socket] = []
        try:
            for client in ("203.0.113.7", "203.0.113.7", "2001:db8::1", "2001:db8::ffff:2"):
                held.append(_held_stream(site.port, forwarded_for=client))
            stream = "/api/quotes/stream/?symbols=AAPL"
            # The proxy (127.0.0.1) holds 4 already: the share is the forwarded client's, not the proxy's.
            held.append(_held_stream(site.port, forwarded_for="203.0.113.8"))
            _address_full(site.port, stream, forwarded_for="203.0.113.7")
            _address_full(site.port, "/api/quotes/?since=0&wait=1", forwarded_for="203.0.113.7")
            # A client's own X-Forwarded-For is to the left of what the proxy appended: ignored.
            _address_full(site.port, stream, forwarded_for="198.51.100.1, 203.0.113.7")
            # Another address in the same IPv6 /64 is the same client; the next /64 is another.
            _address_full(site.port, stream, forwarded_for="2001:db8::3")
            held.append(_held_stream(site.port, forwarded_for="2001:db8:0:1::1"))
            # The WebSocket reads X-Forwarded-For from its handshake the same way.
            reason = "too many connections from your address (2): try again in 5 s"
            assert asyncio.run(_websocket(site.base, forwarded_for="203.0.113.7")) == (1013, reason)
            assert asyncio.run(_websocket(site.base, forwarded_for="203.0.113.200")) == (None, "")
        finally:
            for sock in held:
                sock.close()


def test_behind_nginx_one_address_is_held_to_its_connections_and_its_request_rate(tmp_path, redis_server):
    """deploy/nginx.conf's own limits, lowered in the test's copy (2 connections, bursts of 20 requests, then one
    a minute) so a few clients reach them: the 3rd stream is 503 address_full with Retry-After 5, a request past
    the burst 429 rate_limited with Retry-After 1. The replica (share lifted) never sees them."""
    from .conftest import free_port, wait_for
    from .processes import serves_quotes
    from .test_scaleout import NGINX, nginx_config

    with running_site(tmp_path, redis_server.url, env=capped(0)) as site:
        listen = free_port()
        config = nginx_config(tmp_path, listen, [site.port])
        site_conf = tmp_path / "site.conf"
        text = site_conf.read_text()
        lowered = text.replace("limit_conn ticker_connections 250;", "limit_conn ticker_connections 2;")
        lowered = lowered.replace("rate=20r/s;", "rate=1r/m;").replace("burst=100 nodelay;", "burst=20 nodelay;")
        assert lowered.count("ticker_connections 2;") == 1 and "rate=1r/m;" in lowered and "burst=20 " in lowered
        site_conf.write_text(lowered)
        nginx = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(config), "-g", "daemon off;"])
        held: list[socket.socket] = []
        try:
            wait_for(lambda: serves_quotes(f"http://127.0.0.1:{listen}"), timeout=15, what="nginx to proxy")
            held += [_held_stream(listen), _held_stream(listen)]
            _address_full(listen, "/api/quotes/stream/?symbols=AAPL")
            # nginx's own refusal: the replica (no cap, no share) answered no 503.
            assert '" 503' not in (tmp_path / "web.log").read_text()
            held.pop().close()
            statuses = []
            for _ in range(25):  # past the burst of 20 (a few of it were spent above)
                status, headers, body, sock = _request(listen, "/api/quotes/?symbols=AAPL")
                sock.close()
                statuses.append(status)
                if status == 429:
                    assert headers["retry-after"] == "1" and json.loads(body)["code"] == "rate_limited", body
                    break
            assert statuses[0] == 200 and statuses[-1] == 429, statuses
        finally:
            for sock in held:
                sock.close()
            nginx.terminate()
            nginx.wait(10)


# --- The counting itself (pure logic: no processes) -------------------------------------------------------


def test_an_address_at_its_share_is_refused_while_others_are_admitted():
    """Two from one address (share 2) fill its share: the third is AddressFull, another address gets in."""
    counts = admission.Admission(100, per_address=2)
    for _ in range(2):
        counts.admit("192.0.2.1")
    with pytest.raises(admission.AddressFull) as refused:
        counts.admit("192.0.2.1")
    assert refused.value.limit == 2
    assert refused.value.close_reason == "too many connections from your address (2): try again in 5 s"
    counts.admit("192.0.2.2")
    assert (counts.held, counts.by_address, counts.refused, counts.refused_address) == (
        3,
        {"192.0.2.1": 2, "192.0.2.2": 1},
        1,
        1,
    )


def test_the_count_per_address_is_emptied_at_zero_and_released_once():
    """Every slot given back (twice over): no entry is left for any address, and the counts are back to 0."""
    counts = admission.Admission(0, per_address=3)
    slots = [counts.admit(f"198.51.100.{i % 50}") for i in range(120)]
    assert len(counts.by_address) == 50
    for slot in slots + slots:  # a second release on another way out counts nothing
        slot.release()
    assert (counts.held, counts.by_address) == (0, {})
    assert all(not slot.held for slot in slots)
    counts.admit("198.51.100.1")  # and the share is whole again
    assert counts.by_address == {"198.51.100.1": 1}


def test_an_ipv6_client_counts_for_its_whole_64():
    """Addresses in one /64 share one count (one host can rotate through them); the next /64 is another client."""
    counts = admission.Admission(100, per_address=1)
    counts.admit("2001:db8:1:2::1")
    with pytest.raises(admission.AddressFull):
        counts.admit("2001:db8:1:2:ffff:ffff:ffff:fffe")
    counts.admit("2001:db8:1:3::1")
    assert set(counts.by_address) == {"2001:db8:1:2::/64", "2001:db8:1:3::/64"}
    # An IPv4 client on a dual-stack socket is the same client as over IPv4.
    assert admission.address_key("::ffff:192.0.2.9") == admission.address_key("192.0.2.9") == "192.0.2.9"


def test_a_full_process_says_server_full_and_no_address_or_no_share_is_not_counted_per_address():
    """At the cap the refusal is Full (not AddressFull); without an address, or with share 0, no entry is kept."""
    counts = admission.Admission(2, per_address=1)
    counts.admit("192.0.2.1")
    counts.admit(None)
    with pytest.raises(admission.Full) as refused:
        counts.admit("192.0.2.1")
    assert type(refused.value) is admission.Full
    assert counts.by_address == {"192.0.2.1": 1}
    unshared = admission.Admission(0, per_address=0)
    for _ in range(300):
        unshared.admit("192.0.2.1")
    assert (unshared.held, unshared.by_address) == (300, {})
