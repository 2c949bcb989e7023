"""bench_transports on a tiny run: it starts its own server, drives every transport and writes its reports."""

import json
import subprocess
import sys

import pytest

from .conftest import ROOT, child_env

pytestmark = pytest.mark.processes


def test_tiny_benchmark_run_writes_json_markdown_and_png(tmp_path, redis_server):
    """Three clients per transport for two seconds: every transport delivers, reports are written."""
    out = tmp_path / "bench"
    env = child_env(REDIS_URL=redis_server.url, DJANGO_DEBUG="1")
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "bench_transports",
            "--clients",
            "3",
            "--duration",
            "2",
            "--poll-interval",
            "0.5",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "results.json").read_text())
    rows = {r["transport"]: r for r in data["results"]}
    assert set(rows) == {"websocket", "sse", "longpoll", "polling"}
    for row in rows.values():
        assert row["connected"] == 3 and row["errors"] == [] and row["updates"] > 0
        assert row["bytes_per_update"] >= row["payload_bytes_per_update"] > 0
        assert row["server_cpu_ms_per_1000_updates"] is not None
    # Push transports see every update; polling skips the ones between polls.
    for push in ("websocket", "sse", "longpoll"):
        assert rows[push]["lost_updates"] == 0
    assert rows["polling"]["requests"] > 0 and rows["websocket"]["requests"] == 0
    table = (out / "results.md").read_text()
    assert "| transport | clients | updates/s |" in table and "| websocket |" in table
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_transport_is_refused(tmp_path):
    """A typo in --transports is a clear error, before anything starts."""
    result = subprocess.run(
        [sys.executable, "manage.py", "bench_transports", "--transports", "websocket,carrier-pigeon"],
        cwd=ROOT,
        env=child_env(DJANGO_DEBUG="1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "--transports takes a comma list" in result.stderr
