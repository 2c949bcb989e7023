"""bench_alerts' rig on PostgreSQL (``--database``, bench/rigdb.py): a tiny run delivers every fire once, says
which database it measured, and drops the database it made. Run in the PostgreSQL pass (its server is the one
DATABASE_URL names); the SQLite pass has no server to give it."""

import json
import os
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from django.db import connection

from .test_bench_alerts import _bench

pytestmark = [pytest.mark.processes]


def test_a_tiny_run_on_a_postgresql_rig_delivers_every_fire_once_and_drops_its_database(tmp_path, redis_server):
    if connection.vendor != "postgresql":
        pytest.skip("the rig's PostgreSQL server is DATABASE_URL's: the PostgreSQL pass runs this")
    parts = urlsplit(os.environ["DATABASE_URL"])
    server = urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))
    before = _bench_databases(admin)  # a measurement on the same server, or one left by a killed run, is not ours
    out = tmp_path / "alerts"
    result = _bench(
        "--fires", "", "--users", "12", "--rounds", "1", "--duration", "1.5", "--settle", "0.5",
        "--database", server, "--out", str(out), REDIS_URL=redis_server.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["database"] == "postgresql"
    assert "The rig's database: PostgreSQL." in (out / "results.md").read_text()
    on = data["delivery"][1]
    fires = on["alerts"]
    assert fires["fires_published"] >= 12 * 3 and fires["fires_received"] == fires["fires_published"], fires
    assert fires["fires_lost"] == fires["fires_duplicated"] == fires["fires_misrouted"] == 0, fires
    assert on["alert_steps"]["steps"] >= 3 and on["armer_errors"] == [], on
    assert _bench_databases(admin) <= before, "the rig drops the database it made"


def _bench_databases(admin_url: str) -> set[str]:
    with psycopg.connect(admin_url, autocommit=True) as db:
        rows = db.execute("SELECT datname FROM pg_database WHERE datname LIKE 'ticker_bench_alerts_%'").fetchall()
    return {name for (name,) in rows}
