"""bench_capacity on a tiny run: both parts measure, the JSON and Markdown are written with their keys."""

import json
import subprocess
import sys

import pytest

from .conftest import ROOT, child_env

# It starts its own Redis and market on its own SQLite databases: one run proves what two would.
pytestmark = [pytest.mark.processes, pytest.mark.once]


def test_tiny_capacity_run_writes_every_figure(tmp_path):
    """60 symbols, 0 then 2 followers for 1 s, and 4 database steps: every key present, the followers fed."""
    database, out = tmp_path / "db.sqlite3", tmp_path / "capacity"
    env = child_env(DJANGO_DEBUG="1", DATABASE_URL=f"sqlite:///{database}")
    migrated = subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert migrated.returncode == 0, migrated.stderr
    result = subprocess.run(
        [
            sys.executable, "manage.py", "bench_capacity", "--part", "redis,database", "--symbols", "60",
            "--subscribers", "0,2", "--window", "1", "--settle", "0.3", "--probes", "2", "--steps", "4",
            "--warmup", "1", "--out", str(out),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "results.json").read_text())
    assert {"symbols", "machine", "date", "load_average_at_start"} <= data["config"].keys()
    db = data["database"]
    assert db["symbols"] == 60 and db["steps"] == 4 and db["statements_per_step"] >= 1
    rows = data["redis"]["rows"]
    assert [r["subscribers"] for r in rows] == [0, 2]
    idle, fed = rows
    assert idle["batches_received"] == 0 and fed["batches_received"] >= 2 * 2, fed
    for key in (
        "redis_cpu_ms_per_step", "redis_out_bytes_per_step", "redis_in_bytes_per_step", "market_cpu_ms_per_step",
        "batch_bytes", "lag_ms", "group_send_ms", "group_send_cpu_ms_median", "follower_cpu_ms_per_batch",
        "load_average", "commands_per_s",
    ):  # fmt: skip
        assert key in fed, key
    assert fed["batch_bytes"]["p50"] > 1000 and fed["group_sends"] == 2
    assert {"redis_cpu_ms_per_step", "redis_out_bytes_per_step"} <= data["redis"]["fits"].keys()
    assert data["redis"]["serialize_one_copy"]["bytes"] > 1000
    assert "| K |" in (out / "results.md").read_text()


def test_bad_options_are_refused():
    result = subprocess.run(
        [sys.executable, "manage.py", "bench_capacity", "--part", "nonsense"],
        cwd=ROOT, env=child_env(DJANGO_DEBUG="1"), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0 and "--part" in result.stderr
