"""bench_fanout on a tiny run: the site and every reference server on one feed, reports written."""

import json
import subprocess
import sys

import pytest

from bench.fanout import SERVERS

from .conftest import ROOT, child_env

# It starts its own site on its own SQLite database: one run proves what two would.
pytestmark = [pytest.mark.processes, pytest.mark.once]


def _bench(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "bench_fanout", *args],
        cwd=ROOT,
        env=child_env(DJANGO_DEBUG="1", **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_tiny_fanout_run_measures_every_server_side_by_side(tmp_path, redis_server):
    """2 then 4 clients per server (the site also with permessage-deflate offered), and 6 over two daphne
    processes: all delivered, nothing lost, reports written."""
    out = tmp_path / "fanout"
    result = _bench(
        "--steps", "2,4", "--duration", "1.5", "--settle", "0.5", "--machine", "6x2", "--out", str(out),
        REDIS_URL=redis_server.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "results.json").read_text())
    rows = data["rows"]
    names = ["ticker", "ticker-deflate", *(name for name in SERVERS if name != "ticker")]
    assert [(r["server"], r["clients"]) for r in rows] == [
        *((name, n) for name in names for n in (2, 4)),
        ("ticker-machine", 6),
    ]
    for row in rows:
        assert row["frames_per_s"] > 0, row
        assert row["lost_frames"] == 0 and row["lost_updates_sampled"] == 0, row
        assert row["silent_clients"] == 0 and row["dropped_connections"] == 0, row
        assert row["sampled_updates"] > 0, row  # the seq check saw updates, so it could have seen a gap
        # /proc counts CPU in 10 ms ticks, so a tiny run's server figure may be 0.0; it must be there.
        assert row["server_cpu_us_per_frame"] is not None and row["generator_cpu_us_per_frame"] > 0, row
        assert row["latency_ms"]["p99"] is not None
    assert rows[-1]["processes"] == 2
    # Compression on: every client negotiated it and the quotes frames came compressed (RSV1); off: none did.
    for row in rows:
        if row["server"] == "ticker-deflate":
            assert row["deflated_clients"] == row["clients"] and row["compressed_share"] == 1.0, row
        else:
            assert row["deflated_clients"] == 0 and row["compressed_frames"] == 0, row
    # A ratio for every reference whose CPU figure was measurable at the top step (a tiny run's server may
    # use less than one of /proc's 10 ms ticks, and a ratio to 0.0 cannot be taken).
    top = {r["server"]: r for r in rows if r["clients"] == 4}
    ratios = "\n".join(data["ratios"])
    if top["ticker"]["server_cpu_us_per_frame"]:
        for name, row in top.items():
            if name not in ("ticker", "ticker-deflate") and row["server_cpu_us_per_frame"]:
                assert f"ticker / {row['label']} at 4 vs 4 clients" in ratios, (name, ratios)
        if top["ticker-deflate"]["server_cpu_us_per_frame"]:
            assert "compression on / off (ticker (Channels, daphne), permessage-deflate / ticker" in ratios, ratios
    table = (out / "results.md").read_text()
    assert "| server | clients | frames/s |" in table and "| ticker (Channels, daphne) | 4 |" in table
    assert "| ticker (Channels, daphne), permessage-deflate | 4 |" in table and "RSV1 %" in table
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--servers", "ticker,carrier-pigeon"), "--servers takes"),
        (("--steps", "ten"), "--steps is a comma list"),
        (("--steps", "0"), "--steps positive counts"),
        (("--machine", "5000"), "--machine CLIENTSxPROCESSES or none"),
        (("--machine", "5000x0"), "--machine CLIENTSxPROCESSES or none"),
        (("--generators", "0"), "--generators at least 1"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(args, message):
    """A typo in --servers, --steps, --machine or --generators is a clear error, not a half-run benchmark."""
    result = _bench(*args, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_tiny_personal_watchlist_run_is_reported_beside_the_broadcast(tmp_path, redis_server):
    """--universe/--watchlist: the site twice in one run (seeded broadcast, own watchlists), each without and with
    permessage-deflate offered; nothing lost."""
    out = tmp_path / "personal"
    result = _bench(
        "--steps", "3", "--duration", "1.5", "--settle", "0.5", "--machine", "none", "--universe", "40",
        "--watchlist", "4", "--out", str(out), REDIS_URL=redis_server.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["symbols"] == 40 and data["config"]["watchlist"] == 4
    rows = data["rows"]
    assert [(r["server"], r["clients"]) for r in rows] == [
        ("ticker", 3), ("ticker-deflate", 3), ("ticker-personal", 3), ("ticker-personal-deflate", 3),
    ]  # fmt: skip
    broadcast, broadcast_deflate, personal, personal_deflate = rows
    assert broadcast["lost_frames"] == broadcast_deflate["lost_frames"] == 0
    assert personal["lost_frames"] is personal_deflate["lost_frames"] is None  # personal: checked by seq
    for row in rows:
        assert row["frames_per_s"] > 0 and row["lost_updates_sampled"] == 0 and row["silent_clients"] == 0, row
        assert row["sampled_updates"] > 0, row
        assert row["deflated_clients"] == (3 if row["server"].endswith("-deflate") else 0), row
    assert broadcast_deflate["compressed_share"] == 1.0 and broadcast["compressed_frames"] == 0
    assert "each client its own 4 of 40 symbols, permessage-deflate" in (out / "results.md").read_text()
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_watchlist_needs_a_universe():
    result = _bench("--watchlist", "5", timeout=60)
    assert result.returncode != 0 and "--watchlist needs --universe" in result.stderr
