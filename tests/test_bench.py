"""bench_transports on a tiny run, and what every benchmark command does before it starts anything."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.transports import TRANSPORTS, WEBSOCKETS, Book, Tally

from .conftest import ROOT, child_env

pytestmark = pytest.mark.processes

COMMANDS = ("bench_transports", "bench_fanout", "bench_alerts", "ws_loadcheck")


def manage(*args: str, env: dict, timeout: float = 60, python_code: str | None = None) -> subprocess.CompletedProcess:
    """``python manage.py ARGS`` (or ``python -c python_code ARGS``, which runs manage.py itself)."""
    head = [sys.executable, "-c", python_code] if python_code else [sys.executable, "manage.py"]
    return subprocess.run([*head, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_tiny_benchmark_run_writes_json_markdown_and_png(tmp_path, redis_server):
    """Three clients per transport for two seconds: every transport delivers, reports are written."""
    out = tmp_path / "bench"
    env = child_env(REDIS_URL=redis_server.url, DJANGO_DEBUG="1")
    result = manage(
        "bench_transports", "--clients", "3", "--duration", "2", "--poll-interval", "0.5", "--out", str(out),
        env=env, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "results.json").read_text())
    rows = {r["transport"]: r for r in data["results"]}
    assert list(rows) == list(TRANSPORTS) == [
        "websocket", "websocket-deflate", "websocket-delta", "websocket-delta-deflate", "sse", "longpoll", "polling",
    ]  # fmt: skip
    for row in rows.values():
        assert row["connected"] == 3 and row["errors"] == [] and row["updates"] > 0
        assert row["bytes_per_update"] >= row["wire_payload_bytes_per_update"] > 0
        assert row["payload_bytes_per_update"] > 0 and row["server_cpu_ms_per_1000_updates"] is not None
    # Push transports see every update (and every delta applied to a held quote); polling skips some.
    servers = (out / "servers.log").read_text(errors="replace")
    # (Long-polling's answers may conflate the steps they span, counted apart: docs/protocol.md.)
    for push in (*WEBSOCKETS, "sse", "longpoll"):
        row = rows[push]
        if row["lost_updates"] or row["bad_deltas"]:  # in full: pytest would shorten a long assertion's repr
            pytest.fail(f"{push} lost updates:\n{json.dumps(row, indent=1)}\nservers.log (end):\n{servers[-6000:]}")
    assert rows["polling"]["requests"] > 0 and rows["websocket"]["requests"] == 0
    # What each variant negotiated, and what it got: compressed frames only where deflate was offered.
    plain, deflate = rows["websocket"], rows["websocket-deflate"]
    delta, both = rows["websocket-delta"], rows["websocket-delta-deflate"]
    assert plain["answered"] == {"extensions": None, "protocol": None}
    assert delta["answered"] == {"extensions": None, "protocol": "ticker.v2.json"}
    for row in (deflate, both):
        assert row["answered"]["extensions"].startswith("permessage-deflate"), row["answered"]
        assert row["compressed_frames"] > 0
        # The application reads more JSON than crossed the socket, and fewer socket bytes than uncompressed.
        assert row["payload_bytes_per_update"] > 2 * row["wire_payload_bytes_per_update"], row
    assert plain["compressed_frames"] == delta["compressed_frames"] == 0
    assert plain["payload_bytes_per_update"] == plain["wire_payload_bytes_per_update"]
    assert deflate["bytes_per_update"] < plain["bytes_per_update"] / 2
    assert both["bytes_per_update"] < delta["bytes_per_update"] / 2
    # Deltas carry only what changed: a smaller JSON payload than whole quotes.
    assert delta["payload_bytes_per_update"] < plain["payload_bytes_per_update"]
    assert [r["ratio"] for r in data["ratios"]] == [
        "websocket-delta-deflate / websocket",
        "polling / websocket-delta-deflate",
    ]
    assert data["ratios"][0]["bytes_per_update"] == pytest.approx(
        both["bytes_per_update"] / plain["bytes_per_update"], abs=0.001
    )
    table = (out / "results.md").read_text()
    assert "| transport | clients | updates/s |" in table and "| websocket |" in table
    assert "| websocket-delta-deflate |" in table and "wire payload" in table
    assert "websocket-delta-deflate / websocket, bytes per update:" in table
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_delta_book_rebuilds_whole_quotes_and_counts_a_delta_that_cannot_apply_as_lost():
    """ticker.v2.json: a delta continues the held quote (seq + 1) or is lost; compressed frames are inflated."""
    import asyncio
    import zlib

    def deflated(frame: dict) -> bytes:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = compressor.compress(json.dumps(frame).encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return data[:-4]  # RFC 7692 7.2.1: the 00 00 ff ff tail removed

    tally = Tally(expected=1)
    counting = asyncio.Event()
    book = Book(tally, counting, delta=True)
    whole = {"symbol": "A", "seq": 5, "price": 10.0, "prev_close": 8.0, "change": 2.0, "change_pct": 25.0, "ts": 1}
    book.stash(json.dumps({"type": "snapshot", "step": 1, "quotes": [whole]}).encode())
    counting.set()
    book.stash(
        deflated({"type": "quotes", "step": 2, "quotes": [{"symbol": "A", "seq": 6, "price": 12.0, "ts": 2}]}), True
    )
    book.stash(json.dumps({"type": "quotes", "step": 3, "quotes": [{"symbol": "A", "seq": 8, "ts": 3}]}).encode())
    book.stash(json.dumps({"type": "quotes", "step": 4, "quotes": [{"symbol": "A", "seq": 9, "ts": 4}]}).encode())
    book.stash(json.dumps({"type": "quotes", "step": 5, "quotes": [{**whole, "seq": 10, "ts": 5}]}).encode())
    book.stash(json.dumps({"type": "quotes", "step": 6, "quotes": [{"symbol": "A", "seq": 11}]}).encode())  # no ts
    book.replay()
    assert book.held["A"]["seq"] == 11 and book.held["A"]["price"] == 10.0 and book.held["A"]["change"] == 2.0
    # seq 8 skipped 7 (missing 1) and could not apply, nor could 9 (its quote was gone): 2 bad deltas.
    assert tally.bad_deltas == 2 and tally.lost == 1 + 2
    assert tally.updates == 5 and len(tally.latencies_ms) == 4  # the last delta had no ts: no latency
    # The compressed frame's JSON counts as payload once inflated.
    assert tally.payload_bytes > 0


def test_a_long_poll_answer_may_skip_what_the_steps_it_spans_account_for_and_no_more():
    """Long-polling sends each symbol's latest quote of the steps since ``since`` (docs/protocol.md): an answer
    spanning three steps may skip two seqs a symbol (conflated); a third skipped, or one in an answer of a
    single step, is lost."""
    import asyncio

    tally = Tally(expected=1)
    book = Book(tally, asyncio.Event())
    book.take(
        [{"symbol": "A", "seq": 10, "ts": 1}, {"symbol": "B", "seq": 10, "ts": 1}], snapshot=True, at=1, counted=False
    )
    book.take([{"symbol": "A", "seq": 13, "ts": 2}, {"symbol": "B", "seq": 14, "ts": 2}], at=2, counted=True, spans=3)
    assert (tally.conflated, tally.lost, tally.updates) == (2 + 2, 1, 2)
    book.take([{"symbol": "A", "seq": 15, "ts": 3}], at=3, counted=True)  # one step: nothing to conflate
    assert (tally.conflated, tally.lost) == (4, 2) and [b["lost"] for b in tally.breaks] == [1, 1]


def test_unknown_transport_is_refused(tmp_path):
    """A typo in --transports is a clear error, before anything starts."""
    result = manage("bench_transports", "--transports", "websocket,carrier-pigeon", env=child_env(DJANGO_DEBUG="1"))
    assert result.returncode != 0 and "--transports takes a comma list" in result.stderr


def redis_servers_in(directory: Path) -> list[int]:
    """PIDs of the redis-server processes working in ``directory`` (redis-server changes into its --dir)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            name, cwd = (proc / "comm").read_text().strip(), os.readlink(proc / "cwd")
        except OSError:  # gone meanwhile, or not ours to look at
            continue
        if name == "redis-server" and cwd.startswith(str(directory)):
            pids.append(int(proc.name))
    return pids


def test_a_failing_migrate_is_one_line_and_leaves_no_redis_server_or_temporary_directory(tmp_path):
    """migrate fails on the benchmark's database: one line says so; its redis-server and temporary files are gone."""
    settings_dir, scratch = tmp_path / "settings", tmp_path / "tmp"
    settings_dir.mkdir()
    scratch.mkdir()
    # The real settings, but the benchmark's own site processes (run with DJANGO_DEBUG=0, unlike the command)
    # get a database that cannot be opened: migrate fails there as on a full disk.
    (settings_dir / "unopenable_bench_db.py").write_text(
        "from config.settings import *  # noqa: F403\n"
        "if not DEBUG:  # noqa: F405\n"
        "    DATABASES['default']['NAME'] = '/nonexistent/bench.sqlite3'  # noqa: F405\n"
    )
    env = child_env(
        DJANGO_DEBUG="1",
        DJANGO_SETTINGS_MODULE="unopenable_bench_db",
        PYTHONPATH=str(settings_dir),
        TMPDIR=str(scratch),
    )
    env.pop("REDIS_URL", None)  # so the benchmark starts a redis-server of its own
    result = manage("bench_transports", "--clients", "1", "--duration", "1", env=env, timeout=120)
    assert result.returncode == 1
    assert "Redis: a redis-server started for this run" in result.stdout, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("CommandError: migrate failed"), result.stderr
    assert "unable to open database file" in lines[0]
    assert redis_servers_in(scratch) == []
    assert list(scratch.iterdir()) == []


# Runs manage.py with one package hidden: Python refuses to import a module whose sys.modules entry is None.
WITHOUT = (
    "import runpy, sys; sys.modules[{module!r}] = None; "
    "sys.argv[0] = 'manage.py'; runpy.run_path('manage.py', run_name='__main__')"
)


@pytest.mark.parametrize(
    ("command", "args", "module", "package"),
    [
        (
            "bench_transports",
            ("--clients", "1", "--duration", "1", "--transports", "polling"),
            "matplotlib",
            "matplotlib",
        ),
        ("bench_fanout", ("--steps", "1", "--duration", "1", "--machine", "none"), "socketio", "python-socketio"),
        ("bench_fanout", ("--steps", "1", "--duration", "1", "--servers", "ticker"), "matplotlib", "matplotlib"),
        ("ws_loadcheck", ("--clients", "1", "--duration", "1"), "websockets", "websockets"),
    ],
)
def test_a_missing_development_package_is_named_before_any_work(tmp_path, redis_server, command, args, module, package):
    """Without a package of requirements-dev.txt, a command says in one line what to install, and starts nothing."""
    out = tmp_path / "out"
    env = child_env(DJANGO_DEBUG="1", REDIS_URL=redis_server.url)
    extra = () if command == "ws_loadcheck" else ("--out", str(out))
    result = manage(command, *args, *extra, env=env, timeout=120, python_code=WITHOUT.format(module=module))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"CommandError: {command} needs {package}, from the development install: "
        "run scripts/bootstrap requirements-dev.txt"
    ]
    assert result.stdout == "" and not out.exists()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("secret_key", [True, False])
def test_outside_development_the_commands_say_in_one_line_how_to_run_them(command, secret_key):
    """Without DJANGO_DEBUG=1 (no bench app), with or without a secret key: one line says what to do, no traceback."""
    env = child_env()  # no DJANGO_DEBUG: debug off, as in production
    if not secret_key:
        del env["DJANGO_SECRET_KEY"]
    for args in ((command, "--help"), ("help", command)):
        result = manage(*args, env=env)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            f"{command} is a development command: run it with DJANGO_DEBUG=1, "
            "after scripts/bootstrap requirements-dev.txt"
        ]


@pytest.mark.parametrize("command", COMMANDS)
def test_in_development_the_commands_show_their_help(command):
    """With DJANGO_DEBUG=1 each command is there and --help lists its options."""
    result = manage(command, "--help", env=child_env(DJANGO_DEBUG="1"))
    assert result.returncode == 0, result.stderr
    assert "--duration" in result.stdout
