"""The one-command site: how it finds Redis, and the whole thing running as `scripts/run` runs it."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import websockets

from ticker.runtime.launcher import choose_redis, redis_answers

from .clients import recv_data
from .conftest import ROOT, child_env, free_port, wait_for
from .processes import _drop_database, _fresh_database_url


def closed_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def test_redis_url_is_used_when_set(redis_server):
    """An explicit REDIS_URL that answers is the one used."""
    choice = choose_redis({"REDIS_URL": redis_server.url}, default_url=closed_redis_url())
    assert choice.url == redis_server.url and choice.process is None


def test_unreachable_redis_url_is_a_clear_error():
    """An explicit REDIS_URL that does not answer stops the command with a fixable message."""
    url = closed_redis_url()
    with pytest.raises(SystemExit, match=r"REDIS_URL=.* is not reachable: start that Redis, or unset REDIS_URL"):
        choose_redis({"REDIS_URL": url})


def test_local_redis_is_used_when_it_answers(redis_server):
    """Without REDIS_URL, a Redis answering on the default address is used as it is."""
    choice = choose_redis({}, default_url=redis_server.url)
    assert choice.url == redis_server.url and choice.process is None


def test_redis_server_is_started_when_none_answers():
    """With no Redis answering, an installed redis-server is started on a free port and used."""
    choice = choose_redis({}, default_url=closed_redis_url())
    try:
        assert choice.process is not None and redis_answers(choice.url)
    finally:
        choice.close()
    assert choice.process.poll() is not None and not Path(choice.workdir).exists()


def test_no_redis_at_all_means_the_in_memory_layer(monkeypatch, tmp_path):
    """With no Redis answering and no redis-server on PATH, the site runs on the in-memory layer."""
    monkeypatch.setenv("PATH", str(tmp_path))
    choice = choose_redis({}, default_url=closed_redis_url())
    assert choice.url is None


def _read_until(process: subprocess.Popen, marker: str, lines: list[str]) -> None:
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            return
    raise AssertionError("runsite exited before saying it runs:\n" + "".join(lines))


async def _first_quotes_frame(port: int) -> dict:
    url = f"ws://127.0.0.1:{port}/ws/quotes/"
    async with websockets.connect(url, origin=f"http://127.0.0.1:{port}") as ws:
        await ws.send(json.dumps({"action": "subscribe", "symbols": ["*"]}))
        assert (await recv_data(ws))["type"] == "snapshot"
        return await recv_data(ws, 15)


@pytest.mark.processes
@pytest.mark.parametrize("layer", ["redis", "memory"])
def test_runsite_serves_the_live_site_and_stops_cleanly(tmp_path, redis_server, layer):
    """runsite migrates, prints an admin password once, serves live quotes, and stops everything on SIGTERM."""
    db_url, pg_admin = _fresh_database_url(tmp_path)
    port = free_port()
    env = child_env(DATABASE_URL=db_url, DJANGO_DEBUG="1")
    env.pop("DJANGO_ALLOWED_HOSTS")
    if layer == "redis":
        env["REDIS_URL"] = redis_server.url
        env["TICKER_CHANNEL_PREFIX"] = f"runsite{port}"
        command = [sys.executable, "manage.py", "runsite", "--port", str(port)]
    else:
        # The fallback process itself: the launcher picks it when no Redis can be had.
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        env["TICKER_CHANNEL_LAYER"] = "memory"
        command = [sys.executable, "manage.py", "serve_inprocess", "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        if layer == "redis":
            _read_until(process, "ticker is running", lines)
            output = "".join(lines)
            assert "user: admin   password: " in output
            assert "Channel layer: Redis" in output
        base = f"http://127.0.0.1:{port}"

        def dashboard():
            try:
                return urllib.request.urlopen(base + "/", timeout=2).read().decode()
            except OSError:
                return None

        html = wait_for(dashboard, timeout=30, what="the dashboard")
        assert ("in-memory channel layer" in html) == (layer == "memory")
        frame = asyncio.run(_first_quotes_frame(port))
        assert frame["type"] == "quotes" and frame["quotes"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            _drop_database(db_url, pg_admin)
    assert code == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
