"""bench_connmem on a tiny run: a connection's memory measured on daphne, and where it goes, reports written."""

import json
import subprocess
import sys

import pytest

from .conftest import ROOT, child_env

# It starts its own site on its own SQLite database: one run proves what two would.
pytestmark = [pytest.mark.processes, pytest.mark.once]


def test_tiny_run_finds_each_connections_objects_on_the_server(tmp_path, redis_server):
    """20 clients on a plain daphne, then on one under tracemalloc: the traced server holds all 20, and the
    breakdown finds exactly one WebSocket protocol and one consumer a connection among the heap's growth.
    (One frame a traceback: a deeper one costs a minute of start-up under tracemalloc; the figures are the
    benchmark's, the test proves the probe finds the connections.)"""
    out = tmp_path / "connmem"
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "bench_connmem",
            "--clients",
            "20",
            "--settle",
            "3",
            "--frames",
            "1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=child_env(DJANGO_DEBUG="1", REDIS_URL=redis_server.url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "results.json").read_text())
    assert data["connected_plain"] == data["connected_traced"] == data["held_traced"] == 20, data
    assert data["rss_kib_per_connection"] is not None
    # A connection costs kilobytes of heap (a protocol, a consumer, buffers): a run that measured none measured
    # nothing.
    assert data["heap_bytes_per_connection"] > 2000, data
    instances = {row["type"].rsplit(".", 1)[-1]: row for row in data["instances"]}
    assert instances["GuardedWebSocketProtocol"]["per_connection"] == 1.0, data["instances"]
    assert instances["QuoteConsumer"]["per_connection"] == 1.0, data["instances"]
    # autobahn's ~30 protocol options are read from the class, not copied into each connection (ticker/edge/
    # server/options.py): its dict held 109 attributes with them.
    assert instances["GuardedWebSocketProtocol"]["attributes"] < 85, data["instances"]
    # What a connection no longer keeps: daphne's asyncio.Queue (ticker/edge/server/inputs.py) and the HTTP channel
    # and request it was upgraded from (guards._release_http_channel). daphne itself lets go of an upgraded request
    # at its next check of its connections, once a second: hence the 3 s the run settles before each probe.
    kept = [t for t in instances if t in ("Queue", "HeaderDeadlineChannel", "WebRequest")]
    assert not kept, data["instances"]
    assert data["by_site"] and data["by_own_frame"] and data["by_type"]
    report = (out / "results.md").read_text()
    assert "Memory per WebSocket connection (20 clients" in report and "GuardedWebSocketProtocol" in report
