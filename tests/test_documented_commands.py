"""Every command the README and docs/*.md tell a person to run works as printed (issue 20).

The commands are read from the documents themselves (``bash`` code blocks, and inline code that starts like a
command), so a command added to a document without a place in COMMANDS fails the first test. Each has one of:

- ``RUN``: run as printed from the project's root, in a shell like a person's after the run command (no
  ``DJANGO_*`` set, a database of the test's own);
- ``IMAGE``: a production process command, run as printed where the README says it runs (the web image: its
  ``python`` has the site's packages, which here is ``.venv/bin`` first on PATH; production settings);
- ``SERVER``: a long-running process, started as printed (``HOST`` and ``PORT`` filled in), waited for until it
  serves, then stopped with SIGTERM; it must exit 0;
- ``COVERED``: run as printed by the test named (so not twice);
- ``NOT_RUN``: what it needs and this machine lacks, or why running it here proves nothing new, and what
  covers it instead.

The commands the run command's banner and the lockout page print are run by tests/test_commands.py.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import urllib.request

import pytest

from .conftest import ROOT, free_port, wait_for

pytestmark = pytest.mark.processes

RUN, IMAGE, SERVER, COVERED, NOT_RUN = "run", "image", "server", "covered", "not run"
ENGINE = "needs a Docker engine, which this machine has not: tests/test_compose.py checks the file with docker-compose"
BENCH = "a benchmark of minutes; its tiny run is in tests/test_bench.py or tests/test_bench_fanout.py"
CAPACITY = "a measurement of minutes; its tiny run is tests/test_bench_capacity.py"
SUITE = "the test command itself: CI runs it (running it inside the suite would run the suite again)"

COMMANDS: dict[str, tuple[str, str]] = {
    "scripts/run": (SERVER, "the site at PORT"),
    "make run": (COVERED, "scripts/run, which the Makefile's run target is (checked below), started above"),
    "scripts/test": (NOT_RUN, SUITE),
    "scripts/test fast": (NOT_RUN, SUITE),
    "scripts/test tests/test_admin.py": (NOT_RUN, SUITE),
    "scripts/test -k halt": (NOT_RUN, SUITE),
    "make test": (NOT_RUN, SUITE + "; the Makefile's test target is scripts/test (checked below)"),
    "scripts/test --help": (COVERED, "tests/test_commands.py"),
    "scripts/manage changepassword admin": (COVERED, "tests/test_commands.py"),
    "scripts/manage COMMAND": (NOT_RUN, "the form of the scripts/manage commands here, each run"),
    "scripts/manage axes_reset_username NAME": (RUN, ""),
    "scripts/manage axes_reset_username USERNAME": (RUN, ""),
    "scripts/manage seed_symbols --total 5000": (RUN, ""),
    "scripts/manage seed_alerts --users 100 --alerts 1000": (RUN, ""),
    "scripts/manage alerts_steptime": (NOT_RUN, "a measurement of minutes at 100,000 alerts (docs/benchmarks.md)"),
    "scripts/bootstrap": (RUN, ""),
    "scripts/bootstrap requirements-dev.txt": (RUN, ""),
    "npm ci": (RUN, "in a copy of package.json and package-lock.json (it replaces node_modules)"),
    "node --test": (RUN, ""),
    "node --test tests/js/": (RUN, ""),
    ".venv/bin/python -m pytest tests/test_consumers.py": (RUN, ""),
    "cp .env.example .env": (RUN, "in a copy of .env.example (a real .env in the checkout would be the user's)"),
    "export REDIS_SENTINELS=10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379": (RUN, ""),
    "export REDIS_SENTINEL_MASTER=ticker": (RUN, ""),
    "export REDIS_URL=redis://:PASSWORD@unused/0": (RUN, ""),
    "python manage.py migrate": (IMAGE, ""),
    "python manage.py collectstatic": (IMAGE, "answering its question yes"),
    "python manage.py run_market": (SERVER, "in the image, until it steps"),
    "python manage.py run_market [--interval MS] [--run-for S] [--seed N] [--metrics-port P]": (
        NOT_RUN,
        "its synopsis: the plain form is run",
    ),
    "daphne -b HOST -p PORT config.asgi:application": (SERVER, "in the image, until /healthz answers"),
    "docker compose up": (NOT_RUN, ENGINE),
    "docker compose up --scale web=4": (NOT_RUN, ENGINE),
    "docker compose down -v": (NOT_RUN, ENGINE),
    "docker compose run --rm web python manage.py createsuperuser": (NOT_RUN, ENGINE),
    "docker-compose config": (COVERED, "tests/test_compose.py (with and without the required variables)"),
    "scripts/manage bench_transports": (NOT_RUN, BENCH),
    "scripts/manage bench_fanout": (NOT_RUN, BENCH),
    "scripts/manage bench_alerts": (NOT_RUN, "a benchmark of minutes; its tiny run is in tests/test_bench_alerts.py"),
    "scripts/manage bench_connmem": (NOT_RUN, "a benchmark of minutes; its tiny run is in tests/test_bench_connmem.py"),
    "scripts/manage market_steptime": (NOT_RUN, "a 1,200-step measurement of minutes (docs/benchmarks.md)"),
    "DJANGO_DEBUG=1 .venv/bin/python manage.py bench_transports": (NOT_RUN, BENCH),
    "DJANGO_DEBUG=1 .venv/bin/python manage.py bench_transports --clients 200 --duration 20 --poll-interval 1": (
        NOT_RUN,
        BENCH,
    ),
    "DJANGO_DEBUG=1 .venv/bin/python manage.py bench_fanout": (NOT_RUN, BENCH),
    "DJANGO_DEBUG=1 .venv/bin/python manage.py bench_connmem --clients 2000": (
        NOT_RUN,
        "a benchmark of minutes; its tiny run is in tests/test_bench_connmem.py",
    ),
    "DJANGO_DEBUG=1 .venv/bin/python manage.py bench_alerts": (
        NOT_RUN,
        "a benchmark of minutes; its tiny run is in tests/test_bench_alerts.py",
    ),
    "DJANGO_DEBUG=1 .venv/bin/python manage.py bench_fanout --servers ticker --steps 2000 --machine none": (
        NOT_RUN,
        BENCH,
    ),
    "DJANGO_DEBUG=1 .venv/bin/python manage.py bench_fanout --universe 500 --watchlist 20 --steps 2000 "
    "--machine none": (
        NOT_RUN,
        BENCH,
    ),
    "DJANGO_DEBUG=1 DATABASE_URL=sqlite:////tmp/mk.sqlite3 .venv/bin/python manage.py migrate": (RUN, ""),
    "DJANGO_DEBUG=1 DATABASE_URL=sqlite:////tmp/mk.sqlite3 .venv/bin/python manage.py market_steptime --symbols 5000 "
    "--steps 1200 --output docs/bench-runs/market/sqlite-5000.json": (NOT_RUN, "a measurement of minutes"),
    "DJANGO_DEBUG=1 DATABASE_URL=sqlite:////tmp/al.sqlite3 .venv/bin/python manage.py migrate": (RUN, ""),
    "DJANGO_DEBUG=1 DATABASE_URL=sqlite:////tmp/al.sqlite3 MARKET_SESSION_CLOSED_HOURS=0 .venv/bin/python manage.py "
    "alerts_steptime --steps 400 --warmup 100 --spread 4 --just 0 --output docs/bench-runs/alerts/sqlite-far.json": (
        NOT_RUN,
        "a measurement of minutes at 100,000 alerts",
    ),
    "createdb -h 127.0.0.1 -U postgres st_fin1": (
        NOT_RUN,
        "needs the named PostgreSQL server (the suite's own pass makes its databases the same way)",
    ),
    "DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/st_fin1 .venv/bin/python manage.py migrate -v0": (
        NOT_RUN,
        "needs the PostgreSQL database the createdb line makes",
    ),
    "DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/st_fin1 .venv/bin/python manage.py alerts_steptime "
    "--steps 400 --output docs/bench-runs/alerts/steptime-postgresql/fourth-new7.json": (
        NOT_RUN,
        "a measurement of minutes at 100,000 alerts, on the named PostgreSQL database (each run on a fresh one)",
    ),
    "DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/st_fin1 .venv/bin/python manage.py alerts_steptime "
    "--steps 400 --output docs/bench-runs/alerts/steptime-postgresql/fifth-new1.json": (
        NOT_RUN,
        "a measurement of minutes at 100,000 alerts, on the named PostgreSQL database (each run on a fresh one)",
    ),
    "DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/st_fin1 .venv/bin/python manage.py alerts_steptime "
    "--steps 400 --output docs/bench-runs/alerts/steptime-postgresql/run1.json": (
        NOT_RUN,
        "a measurement of minutes at 100,000 alerts, on the named PostgreSQL database",
    ),
    'DJANGO_DEBUG=1 .venv/bin/python manage.py bench_alerts --fires "" --users 2000 --rounds 3 --duration 10 '
    "--settle 6 --database postgres://postgres@127.0.0.1:5432/ --out docs/bench-runs/alerts/run13-e-final-postgresql": (
        NOT_RUN,
        "a benchmark of minutes on a PostgreSQL server; its tiny run is in tests/test_bench_alerts_postgresql.py",
    ),
    'DJANGO_DEBUG=1 .venv/bin/python manage.py bench_alerts --fires "" --users 2000 --rounds 3 --duration 10 '
    "--settle 6 --out docs/bench-runs/alerts/run13-e-final-sqlite": (
        NOT_RUN,
        "a benchmark of minutes; its tiny run is in tests/test_bench_alerts.py",
    ),
    'DJANGO_DEBUG=1 .venv/bin/python manage.py bench_alerts --fires "" --users 2000 --rounds 3 --duration 10 '
    "--out docs/bench-runs/alerts/run12-fifth": (
        NOT_RUN,
        "a benchmark of minutes; its tiny run is in tests/test_bench_alerts.py",
    ),
    'DJANGO_DEBUG=1 .venv/bin/python manage.py bench_alerts --fires "" --users 2000 --rounds 3 --duration 10 '
    "--out docs/bench-runs/alerts/run11-armer-by-step": (
        NOT_RUN,
        "a benchmark of minutes; its tiny run is in tests/test_bench_alerts.py",
    ),
    'DJANGO_DEBUG=1 .venv/bin/python manage.py bench_alerts --fires "" --users 2000 --rounds 3 --duration 10 '
    "--out docs/bench-runs/alerts/run10-fourth": (
        NOT_RUN,
        "a benchmark of minutes; its tiny run is in tests/test_bench_alerts.py",
    ),
    'DJANGO_DEBUG=1 .venv/bin/python manage.py bench_alerts --fires "" --users 2000 --rounds 3 --duration 10 '
    "--out docs/bench-runs/alerts/run9-riding": (
        NOT_RUN,
        "a benchmark of minutes; its tiny run is in tests/test_bench_alerts.py",
    ),
    "createdb -h 127.0.0.1 -U postgres ticker_market_h": (
        NOT_RUN,
        "needs the named PostgreSQL server; the suite's PostgreSQL pass makes its databases the same way",
    ),
    "DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/ticker_market_h .venv/bin/python manage.py "
    "migrate": (
        NOT_RUN,
        "needs the named PostgreSQL database made by the createdb line",
    ),
    "DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/ticker_market_h .venv/bin/python manage.py "
    "market_steptime --symbols 5000 --steps 1200 --output docs/bench-runs/market/postgresql-5000.json": (
        NOT_RUN,
        "a measurement of minutes on the named PostgreSQL database",
    ),
    ".venv/bin/python -m pytest tests/test_multihost.py -m alone -p no:randomly -q -s": (
        NOT_RUN,
        "the multi-host rehearsal itself (as root, about 2 minutes); scripts/test runs it in its last pass",
    ),
    "DJANGO_DEBUG=1 .venv/bin/python manage.py bench_capacity --part redis --symbols 5000 "
    "--out docs/bench-runs/capacity/redis-run1": (NOT_RUN, CAPACITY),
    "DJANGO_DEBUG=1 .venv/bin/python manage.py bench_capacity --part redis --symbols 30 --subscribers 0,1,4,16 "
    "--window 5 --probes 10 --out docs/bench-runs/capacity/redis-30-symbols": (NOT_RUN, CAPACITY),
    "DJANGO_DEBUG=1 .venv/bin/python manage.py bench_capacity --part shards --symbols 5000 --subscribers 16 "
    "--probes 20 --out docs/bench-runs/capacity/shards-16": (NOT_RUN, CAPACITY),
    "createdb -h 127.0.0.1 -U postgres ticker_scale_cap": (
        NOT_RUN,
        "needs the named PostgreSQL server; the suite's PostgreSQL pass makes its databases the same way",
    ),
    "DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/ticker_scale_cap .venv/bin/python manage.py "
    "migrate": (NOT_RUN, "needs the named PostgreSQL database made by the createdb line"),
    "DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/ticker_scale_cap .venv/bin/python manage.py "
    "bench_capacity --part database --symbols 5000 --steps 480 --warmup 20 "
    "--out docs/bench-runs/capacity/database-postgresql-5000": (
        NOT_RUN,
        CAPACITY + ", on the named PostgreSQL database",
    ),
    "for n in 1000 5000 10000; do DJANGO_DEBUG=1 DATABASE_URL=sqlite:////tmp/cap-st-$n.sqlite3 .venv/bin/python "
    "manage.py migrate -v0; done": (
        NOT_RUN,
        "three scratch databases migrated; the same migrate on one is run for benchmarks.md's market_steptime lines",
    ),
    "for n in 1000 5000 10000; do DJANGO_DEBUG=1 DATABASE_URL=sqlite:////tmp/cap-st-$n.sqlite3 "
    "MARKET_SESSION_CLOSED_HOURS=0 .venv/bin/python manage.py market_steptime --symbols $n --steps 240 --warmup 20 "
    "--output docs/bench-runs/capacity/steptime-sqlite-$n.json; done": (NOT_RUN, "a measurement of minutes"),
    "for n in 10000 5000 1000; do DJANGO_DEBUG=1 DATABASE_URL=sqlite:////tmp/cap-st-$n.sqlite3 "
    "MARKET_SESSION_CLOSED_HOURS=0 .venv/bin/python manage.py market_steptime --symbols $n --steps 240 --warmup 20 "
    "--output docs/bench-runs/capacity/steptime-sqlite-$n-second.json; done": (NOT_RUN, "a measurement of minutes"),
    "TICKER_FUZZ_CASES=5000 .venv/bin/python -m pytest tests/test_fuzz_ways_out.py -s": (
        NOT_RUN,
        "the longer fuzz run (about 5 minutes); the suite runs 500 cases per transport",
    ),
}

# Inline code that starts like one of these is a command to a person (not a file name or a variable).
COMMAND_START = re.compile(
    r"^(scripts/\w+|python manage\.py |\.venv/bin/\w+ |DJANGO_DEBUG=1 |TICKER_FUZZ_CASES=|docker compose |"
    r"docker-compose |daphne -b |node --test|npm ci|make (run|test)|cp |createdb |curl |export )"
)


def documented_commands() -> dict[str, set[str]]:
    """Every command in README.md and docs/*.md: the lines of ``bash`` blocks, and inline code that starts like a
    command; each with the documents that print it."""
    found: dict[str, set[str]] = {}
    for path in ["README.md", *sorted(glob.glob("docs/*.md", root_dir=ROOT))]:
        text = (ROOT / path).read_text()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            for line in block.splitlines():
                if command := re.split(r"\s+#", line)[0].strip():
                    found.setdefault(command, set()).add(path)
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        for span in re.findall(r"`([^`\n]+)`", prose):
            if COMMAND_START.match(span.strip()):
                found.setdefault(span.strip(), set()).add(path)
    return found


def test_every_documented_command_has_a_place_here():
    """A command printed in the README or docs/ is in COMMANDS (run, or why not), and nothing here is stale."""
    printed = documented_commands()
    assert set(printed) - set(COMMANDS) == set(), "printed but not placed here"
    assert set(COMMANDS) - set(printed) == set(), "placed here but no longer printed"
    for command, (kind, _) in COMMANDS.items():
        assert kind in (RUN, IMAGE, SERVER, COVERED, NOT_RUN), command


def _person(tmp_path, redis_url: str) -> dict[str, str]:
    """A person's shell after the run command: nothing of the site's set, but a database and Redis of the test's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TICKER_", "PYTEST_", "MARKET_"))}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", REDIS_URL=redis_url)
    return env


def _image(tmp_path, redis_url: str) -> dict[str, str]:
    """The web image's environment: its python has the site's packages, production settings."""
    env = _person(tmp_path, redis_url)
    env.update(
        PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}",
        DJANGO_SECRET_KEY="documented-commands-test-key-0123456789-abcdefghij",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_COOKIES="0",
        DJANGO_STATIC_ROOT=str(tmp_path / "static"),
    )
    return env


def _run(command: str, env: dict[str, str], *, cwd=ROOT, stdin: str = "") -> subprocess.CompletedProcess:
    # Generous: bootstrap may install the pinned packages, npm ci fetches from the registry, pytest runs a module.
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=600
    )


def _commands(kind: str) -> list[str]:
    return [command for command, (each, _) in COMMANDS.items() if each == kind]


def test_the_commands_a_person_runs_work_as_printed(tmp_path, redis_server):
    """Each RUN command exits 0 as printed (after the run command's migrate, which the site's commands need)."""
    env = _person(tmp_path, redis_server.url)
    assert _run("scripts/manage migrate --verbosity 0", env).returncode == 0
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("package.json", "package-lock.json", ".env.example"):
        shutil.copy(ROOT / name, copy / name)
    failed = {}
    for command in _commands(RUN):
        where = copy if command in ("npm ci", "cp .env.example .env") else ROOT
        done = _run(command, env, cwd=where)
        if done.returncode != 0:
            failed[command] = (done.stdout[-1500:], done.stderr[-1500:])
    assert failed == {}
    assert (copy / ".env").read_text() == (ROOT / ".env.example").read_text()
    assert (copy / "node_modules" / "lightweight-charts").is_dir()


def test_the_production_commands_work_as_printed_in_the_image(tmp_path, redis_server):
    """migrate and collectstatic, as the README prints them, in the image's environment."""
    env = _image(tmp_path, redis_server.url)
    for command in _commands(IMAGE):
        done = _run(command, env, stdin="yes\n")
        assert done.returncode == 0, (command, done.stdout[-1500:], done.stderr[-1500:])
    assert (tmp_path / "static" / "ticker" / "js" / "main.js").is_file()


def _serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("command", _commands(SERVER))
def test_the_servers_start_as_printed_and_stop_cleanly(tmp_path, redis_server, command):
    """Each SERVER command, started as printed, serves (or steps) and exits 0 on SIGTERM."""
    port = free_port()
    in_image = command.startswith(("python ", "daphne "))
    env = _image(tmp_path, redis_server.url) if in_image else _person(tmp_path, redis_server.url)
    env["PORT"] = str(port)
    if in_image:
        assert _run("python manage.py migrate --verbosity 0", env).returncode == 0
    line = command.replace("-b HOST -p PORT", f"-b 127.0.0.1 -p {port}")
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {line}"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        if "run_market" in command:
            # 60 s: a market process on a loaded 2-core machine takes several seconds to import and open.
            wait_for(lambda: "market open" in log.read_text(errors="replace"), timeout=60, what="the market to step")
        else:
            # 120 s: scripts/run bootstraps, migrates and starts Redis and the market first.
            wait_for(lambda: _serves(f"http://127.0.0.1:{port}/healthz"), timeout=120, what=f"{command} to serve")
    except AssertionError:
        process.kill()
        raise AssertionError(log.read_text(errors="replace")[-3000:]) from None
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert code == 0, log.read_text(errors="replace")[-3000:]


def test_make_run_and_make_test_are_the_two_commands():
    """`make run` and `make test` run scripts/run and scripts/test, nothing else."""
    for target, script in (("run", "scripts/run"), ("test", "scripts/test")):
        done = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and done.stdout.strip() == script, done.stdout + done.stderr
