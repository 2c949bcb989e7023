"""bench_alerts on a tiny run: both ways deliver every fire once, the signed-in clients get each of their alerts
once by step, and the reports are written."""

import json
import subprocess
import sys

import pytest

from .conftest import ROOT, child_env

# It starts its own site on its own SQLite database: one run proves what two would.
pytestmark = [pytest.mark.processes, pytest.mark.once]


def _bench(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "bench_alerts", *args],
        cwd=ROOT,
        env=child_env(DJANGO_DEBUG="1", **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_tiny_alerts_run_delivers_every_fire_once(tmp_path, redis_server):
    """20 fires a step both ways; 12 signed-in users on one daphne, a window without alerts then one with."""
    out = tmp_path / "alerts"
    result = _bench(
        "--fires", "20", "--fire-steps", "2", "--users", "12", "--rounds", "1", "--duration", "1.5",
        "--settle", "0.5", "--out", str(out), REDIS_URL=redis_server.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "results.json").read_text())
    routing = data["routing"]
    assert [(r["users"], r["way"]) for r in routing] == [(20, "per-user"), (20, "routed")]
    for row in routing:
        assert row["fires"] == 20 * 2 and row["fires_lost"] == 0 and row["steps_not_exactly_once"] == 0, row
        assert row["latency_ms"]["p99"] is not None and row["publisher_wall_ms"] > 0, row
    by_way = {r["way"]: r for r in routing}
    # A group_send costs the same few round trips whatever it carries: N of them against one.
    assert by_way["per-user"]["round_trips_per_step"] == 20 * by_way["routed"]["round_trips_per_step"], routing
    off, on = data["delivery"]
    assert (off["personal"], on["personal"]) == (False, True)
    assert off["clients"] == on["clients"] == 12
    assert off["alerts"] is None
    fires = on["alerts"]
    assert fires["fires_published"] >= 12 * 3, fires  # 1.5 s at 250 ms a step: several steps published
    assert fires["fires_received"] == fires["fires_published"], fires
    assert fires["fires_lost"] == fires["fires_duplicated"] == fires["fires_unexpected"] == 0, fires
    assert fires["fires_misrouted"] == 0, fires
    assert on["alert_latency_ms"]["p99"] is not None
    for row in (off, on):
        assert row["frames_per_s"] > 0 and row["lost_frames"] == 0 and row["silent_clients"] == 0, row
    table = (out / "results.md").read_text()
    assert "| 20 | routed |" in table and "| with 12 alerts a step | 12 |" in table
    assert "group per user / one routed message" in "\n".join(data["ratios"])


@pytest.mark.parametrize(
    ("args", "message"),
    [(("--fires", "many"), "--fires is a comma list"), (("--users", "-1"), "--users not negative")],
)
def test_bad_arguments_are_refused(args, message):
    result = _bench(*args, timeout=60)
    assert result.returncode != 0 and message in result.stderr, result.stderr
