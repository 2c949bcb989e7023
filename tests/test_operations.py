"""Operations on real processes: /healthz and /readyz, /metrics, the market's metrics, JSON logs.

Everything here runs daphne and run_market as production does (tests/processes.py) and reads the endpoints over
HTTP the way Docker's health check and Prometheus do. The browser test of the operations view is in
tests/test_browser_ops.py.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import websockets
import yaml

from .clients import follow, sample, samples, stop_following, until
from .conftest import ROOT, RedisServer, free_port, wait_for
from .processes import running_site

pytestmark = pytest.mark.processes

REAL_HOST_ONLY = {"DJANGO_ALLOWED_HOSTS": "ticker.example.com"}


def status_of(url: str, headers: dict | None = None) -> int:
    """The HTTP status of a GET (no exception for 4xx/5xx); 0 when nothing answers."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def json_of(url: str, headers: dict | None = None) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def compose_healthcheck() -> str:
    """The Python one-liner docker-compose.yml's web health check runs inside the container."""
    test = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    return test[3]


def test_health_checks_pass_with_allowed_hosts_set_to_the_real_host_name_only(tmp_path, redis_server):
    """DJANGO_ALLOWED_HOSTS=ticker.example.com: Django refuses 127.0.0.1, yet /healthz, /readyz, /metrics and
    the compose health check itself all pass against 127.0.0.1."""
    with running_site(tmp_path, redis_server.url, market=True, env=REAL_HOST_ONLY, serving=False) as site:
        assert status_of(site.base + "/api/quotes/") == 400, "the host check is on: 127.0.0.1 is not an allowed host"
        assert status_of(site.base + "/healthz") == 200
        # Ready once the market's batches arrive (it starts beside daphne); 30 s: a busy machine.
        wait_for(lambda: status_of(site.base + "/readyz") == 200, timeout=30, what="/readyz to say ready")
        # Loopback may read /metrics, so it gets the details too (none: ready).
        assert json_of(site.base + "/readyz") == (200, {"status": "ready", "reasons": [], "details": []})
        assert status_of(site.base + "/metrics") == 200, "loopback may read the metrics by default"
        check = compose_healthcheck().replace("127.0.0.1:8000", f"127.0.0.1:{site.port}")
        result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr


def test_readyz_follows_redis_and_healthz_stays_up(tmp_path):
    """Redis stopped: /readyz says 503 (with the reason) within 5 s and 200 within 5 s of its return; /healthz
    answers 200 all along."""
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    try:
        with running_site(tmp_path, redis_server.url, market=True) as site:
            wait_for(lambda: status_of(site.base + "/readyz") == 200, timeout=30, what="/readyz to say ready")
            health: list[int] = []
            done = threading.Event()

            def watch_health():
                while not done.is_set():
                    health.append(status_of(site.base + "/healthz"))
                    time.sleep(0.1)

            watcher = threading.Thread(target=watch_health, daemon=True)
            watcher.start()
            try:
                redis_server.stop()
                stopped = time.monotonic()
                wait_for(lambda: status_of(site.base + "/readyz") == 503, timeout=5, what="/readyz to say 503")
                went = time.monotonic() - stopped
                status, body = json_of(site.base + "/readyz")
                assert status == 503 and body["status"] == "not ready"
                assert "feed_disconnected" in body["reasons"], body
                assert any(detail.startswith("feed: not receiving") for detail in body["details"]), body

                redis_server.start()
                back = time.monotonic()
                wait_for(lambda: status_of(site.base + "/readyz") == 200, timeout=5, what="/readyz to say 200 again")
                returned = time.monotonic() - back
            finally:
                done.set()
                watcher.join(10)
            assert health and set(health) == {200}, f"/healthz answered {sorted(set(health))}"
            print(f"\n/readyz: 503 {went:.2f} s after Redis stopped, 200 {returned:.2f} s after it returned")
    finally:
        redis_server.stop()


def test_readyz_tells_the_public_a_reason_code_and_only_operators_the_error(tmp_path, redis_server):
    """Issue 21: a web process whose database does not answer says 503 "database_unavailable" to a caller outside
    TICKER_METRICS_ALLOW, without the driver's error text; a caller that may read /metrics gets the error too."""
    token = "readyz-test-token-0123456789abcdef"
    with running_site(tmp_path, redis_server.url) as site:
        # A second web process on the same Redis whose database is a port nothing listens on: a real driver
        # error. Loopback is not in its TICKER_METRICS_ALLOW, so this test is a public caller unless it sends
        # the metrics token.
        unreachable = f"postgres://ticker:not-a-password@127.0.0.1:{free_port()}/ticker"
        env = {"DATABASE_URL": unreachable, "TICKER_METRICS_ALLOW": "192.0.2.0/24", "TICKER_METRICS_TOKEN": token}
        base = site.start_web(name="no-database", env=env, serving=False)
        status, public = json_of(base + "/readyz")
        assert status == 503 and public["status"] == "not ready", public
        assert "database_unavailable" in public["reasons"] and "details" not in public, public
        assert all(code.replace("_", "").isalpha() for code in public["reasons"]), public
        assert "Error" not in json.dumps(public) and "127.0.0.1" not in json.dumps(public)
        status, operator = json_of(base + "/readyz", {"Authorization": f"Bearer {token}"})
        assert status == 503 and operator["reasons"] == public["reasons"], operator
        error = next(detail for detail in operator["details"] if detail.startswith("database: "))
        assert "OperationalError" in error and "127.0.0.1" in error, operator


def test_metrics_count_connections_frames_and_a_1008_close(tmp_path, redis_server):
    """N WebSocket clients show as ticker_connections{transport="websocket"} == N; frames sent grow by about
    clients x steps; a flooding client's close is counted under code 1008 and as rate_limited."""
    clients = 4
    with running_site(tmp_path, redis_server.url, market=True, env={"TICKER_LOG_FORMAT": "json"}) as site:
        asyncio.run(_metrics(site, clients))
        # JSON lines: the flooder's connection id ties its opening, its refusal and its close together.
        lines = [json.loads(line) for line in (tmp_path / "web.log").read_text().splitlines() if line.startswith("{")]
        closed = [line for line in lines if line["message"] == "websocket closed with 1008"]
        assert len(closed) == 1, lines[-20:]
        conn = closed[0]["conn"]
        assert conn.startswith("ws-") and closed[0]["process_id"].endswith(f":{site.processes['web'].pid}")
        story = [line["message"] for line in lines if line["conn"] == conn]
        assert story == ["websocket opened", "closing: rate_limited", "websocket closed with 1008"], story
        # The access log is JSON lines too, with the process id (issue 20): the polls of /api/quotes/ that
        # running_site made are there; the /metrics scrapes above, answered 200, are not (DEBUG).
        access = [line for line in lines if line["logger"] == "ticker.access"]
        assert any('"GET /api/quotes/" 200' in line["message"] for line in access), access[-5:]
        assert all(line["process_id"] == closed[0]["process_id"] for line in access)
        assert not any("/metrics" in line["message"] for line in access), access[-5:]
        raw = [line for line in (tmp_path / "web.log").read_text().splitlines() if '"GET ' in line]
        assert all(line.startswith("{") for line in raw), raw[:3]


async def _metrics(site, clients: int) -> None:
    url = site.base + "/metrics"
    followers, tasks = await follow(site.base, clients)
    try:
        found = await asyncio.to_thread(samples, url)
        assert sample(found, "ticker_connections", transport="websocket") == clients
        assert sample(found, "ticker_subscriptions", kind="all") == clients
        assert sample(found, "ticker_feed_live") == 1
        frames_before, step_before = (
            sample(found, "ticker_frames_sent_total", kind="quotes"),
            sample(found, "ticker_feed_step"),
        )
        received_before = sum(len(f.quotes_since(0)) for f in followers)
        # Twenty steps of 250 ms; 15 s on a busy machine.
        await until(lambda: min(len(f.quotes_since(0)) for f in followers) > 25, limit=15, what="twenty more steps")
        found = await asyncio.to_thread(samples, url)
        received = sum(len(f.quotes_since(0)) for f in followers) - received_before
        frames = sample(found, "ticker_frames_sent_total", kind="quotes") - frames_before
        steps = sample(found, "ticker_feed_step") - step_before
        # One frame per client per step that changed something (nearly all do with 30 symbols); what the
        # clients counted lags what the server sent by the frames still in flight.
        assert clients * steps * 0.7 <= frames <= clients * steps, (frames, steps)
        assert received * 0.8 <= frames <= received + clients * 4, (frames, received)
        assert sample(found, "ticker_updates_delivered_total") > frames
        assert sample(found, "ticker_bytes_sent_total", kind="quotes") > frames * 50
        assert sample(found, "ticker_fanout_seconds_count") >= steps
        assert sample(found, "ticker_feed_lag_seconds_count") >= steps

        code = await _flood(site.base)
        assert code == 1008
        # The server counts the close once its side of the closing handshake is done: a moment after the client's.
        await until(lambda: any(k[0] == "ticker_closes_total" for k in samples(url)), limit=10, what="a close counted")
        found = await asyncio.to_thread(samples, url)
        closes = {dict(labels)["code"]: v for (name, labels), v in found.items() if name == "ticker_closes_total"}
        assert closes == {"1008": 1}, closes
        assert sample(found, "ticker_refused_messages_total", reason="rate_limited") == 1
        assert sample(found, "ticker_connections", transport="websocket") == clients
    finally:
        await stop_following(tasks)
    await until(lambda: sample(samples(url), "ticker_connections", transport="websocket") == 0, limit=10, what="0")


async def _flood(base: str) -> int:
    """A client that sends 200 pings at once (the burst is 40): the server closes it; its close code."""
    async with websockets.connect(base.replace("http", "ws") + "/ws/quotes/", origin=base) as ws:
        for _ in range(200):
            await ws.send('{"action": "ping"}')
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        return ws.close_code


def test_metrics_are_refused_outside_the_allowed_networks_unless_the_token_is_sent(tmp_path, redis_server):
    """Only loopback by default; with TICKER_METRICS_ALLOW elsewhere, 403 without the bearer token, 200 with it."""
    env = {"TICKER_METRICS_ALLOW": "10.0.0.0/8", "TICKER_METRICS_TOKEN": "s3cret-scrape-token"}
    with running_site(tmp_path, redis_server.url, env=env) as site:
        assert status_of(site.base + "/metrics") == 403
        assert status_of(site.base + "/metrics", {"Authorization": "Bearer wrong"}) == 403
        assert status_of(site.base + "/metrics", {"Authorization": "Bearer s3cret-scrape-token"}) == 200
        connection = http.client.HTTPConnection("127.0.0.1", site.port, timeout=5)
        connection.request("POST", "/healthz")
        assert connection.getresponse().status == 405


def test_the_market_serves_its_own_metrics_on_its_port(tmp_path, redis_server):
    """run_market --metrics-port: steps, step times, symbols listed and publishes, on the market's own port."""
    port = free_port()
    with running_site(tmp_path, redis_server.url) as site:
        site.start_market("--metrics-port", str(port))
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: status_of(url) == 200, timeout=30, what="the market's metrics port")
        wait_for(lambda: sample(samples(url), "ticker_market_steps_total") >= 5, timeout=15, what="five steps")
        found = samples(url)
        assert sample(found, "ticker_market_symbols") == len(site.get_json("/api/quotes/")["quotes"])
        assert sample(found, "ticker_market_step_seconds_count") >= 5
        assert sample(found, "ticker_market_publish_failures_total") == 0
        assert sample(found, "ticker_market_last_publish_timestamp_seconds") > time.time() - 30
        assert ("ticker_connections", (("transport", "websocket"),)) not in found, "web figures stay on /metrics"
