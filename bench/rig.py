"""The one process rig of the benchmarks: a throwaway site, and servers started on it on demand.

A rig is a fresh database (SQLite, or one on a PostgreSQL server named with
``database``: bench/rigdb.py), migrated, so seeded with the simulated market;
its own Redis; and the site's ``run_market``: the feed every server under
test follows. ``bench_transports`` starts the site on daphne on it;
``bench_fanout`` the site and the reference servers, each pinned to a core.
Every process it starts is stopped, and its temporary directories removed,
on ``close()`` (or leaving its ``with`` block), also when start-up fails
halfway: a migrate that fails, a server that never listens.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.rigdb import RigDatabase, RigDatabaseError
from ticker.runtime.launcher import DEFAULT_REDIS_URL, RedisChoice, free_port, redis_answers, start_redis_server

BASE_DIR = Path(__file__).resolve().parent.parent
PY = sys.executable
MANAGE = (PY, str(BASE_DIR / "manage.py"))
START_TIMEOUT_S = 60


# Run by ``manage.py shell -c`` when the site has no seed_symbols: S0001, S0002, ... until enough are listed.
_LIST_SIMULATED = """
import random
from ticker.models import Stock
rng = random.Random(11)
have = Stock.objects.filter(active=True).count()
rows, i = [], 0
while have + len(rows) < %(total)d:
    i += 1
    symbol = f"S{i:04d}"
    if Stock.objects.filter(symbol=symbol).exists():
        continue
    price = f"{rng.uniform(5, 500):.2f}"
    rows.append(Stock(symbol=symbol, name=f"Simulated Co. {i:04d}", price=price, reference_price=price,
                      volatility=round(rng.uniform(0.15, 0.6), 2), drift=0.05))
Stock.objects.bulk_create(rows)
"""


class RigError(RuntimeError):
    """A process the rig needs would not start; the message says which, with its last lines of output."""


@dataclass(frozen=True)
class Server:
    """One server under test: how to start it and how its clients talk to it."""

    name: str
    command: tuple[str, ...]  # "{port}" is replaced
    path: str  # the WebSocket path
    dialect: str  # how clients talk to it: see bench.loadgen.Target
    label: str
    django: bool = False  # the site itself: wait for its HTTP API, not just the port
    needs: tuple[str, ...] = ()  # modules it runs on beyond the runtime install (bench.deps)


DAPHNE = (PY, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}")
UVICORN = (PY, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning", "--no-access-log")
# The reference servers' uvicorn as users install it (uvicorn[standard]): a reference should be at its best.
UVICORN_NEEDS = ("uvicorn", "uvloop", "httptools")

SITE = Server(
    "ticker", (*DAPHNE, "config.asgi:application"), "/ws/quotes/", "ticker", "ticker (Channels, daphne)", True
)


def benchmark_redis(env: dict[str, str]) -> RedisChoice:
    """REDIS_URL if set; else a redis-server of the benchmark's own; else the Redis on localhost:6379.

    A private server first, unlike ``scripts/run``: a benchmark should not
    share Redis with a developer's running site, nor leave keys behind.
    """
    if env.get("REDIS_URL"):
        if not redis_answers(env["REDIS_URL"]):
            raise RigError(
                "REDIS_URL is not reachable: start that Redis, or unset REDIS_URL to let the benchmark start one."
            )
        return RedisChoice(env["REDIS_URL"], "REDIS_URL")
    own = start_redis_server()
    if own:
        return own
    if redis_answers(DEFAULT_REDIS_URL):
        return RedisChoice(DEFAULT_REDIS_URL, f"the Redis answering at {DEFAULT_REDIS_URL}")
    raise RigError("the benchmark needs Redis: install redis-server (scripts/system-deps) or set REDIS_URL.")


def _pin(cpu: int | None):
    return None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Rig:
    """A throwaway feed: fresh SQLite, Redis, the site's run_market; servers started on demand."""

    def __init__(
        self,
        *,
        interval_ms: int,
        name: str,
        log: Callable[[str], None] = print,
        universe: int | None = None,
        database: str | None = None,
    ):
        """Start the feed; ``name`` tags the temporary directory and channel prefix; ``log`` gets one line each.

        ``universe``: list generated symbols until that many are listed (``bench_fanout --universe``).
        ``database``: a PostgreSQL server (``postgres://user@host:port/``) to make the rig's database on, instead
        of a SQLite file.
        """
        self.redis = benchmark_redis(dict(os.environ))
        self.processes: list[subprocess.Popen] = []
        self.tmp = self.output = self.db = None
        try:
            self.tmp = tempfile.TemporaryDirectory(prefix=f"ticker-{name}-")
            try:
                self.db = RigDatabase(Path(self.tmp.name), name, database)
            except RigDatabaseError as exc:
                raise RigError(str(exc)) from None
            self.env = {
                **os.environ,
                "DATABASE_URL": self.db.url,
                "REDIS_URL": self.redis.url,
                "TICKER_CHANNEL_LAYER": "redis",
                "TICKER_CHANNEL_PREFIX": f"{name}{os.getpid()}",
                "DJANGO_DEBUG": "0",
                "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
                "DJANGO_STATIC_ROOT": f"{self.tmp.name}/static",
                # Sessions follow the wall clock (closed 30 s in every 7 minutes by default): a run that
                # fell into a close would measure a market that does not move.
                "MARKET_SESSION_CLOSED_HOURS": "0",
                # No connection cap: the benchmarks measure what a process carries past the default. Nor a
                # share per address (issue 21): every benchmark client connects from 127.0.0.1.
                "TICKER_MAX_CONNECTIONS": "0",
                "TICKER_MAX_CONNECTIONS_PER_ADDRESS": "0",
            }
            self.output = open(Path(self.tmp.name) / "servers.log", "ab")  # noqa: SIM115 (closed in close)
            log(f"Redis: {self.redis.how}; database: {self.db.where}")
            self._migrate()
            self.seeded = self.listed_symbols()  # the migration's seeded market
            if universe and universe > len(self.seeded):
                self._list_universe(universe, log)
            self.market = self.spawn((*MANAGE, "run_market", "--interval", str(interval_ms)))
            self.symbols = self._first_steps()
            self.listed = self.listed_symbols()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _migrate(self) -> None:
        done = subprocess.run((*MANAGE, "migrate", "-v0"), env=self.env, cwd=BASE_DIR, capture_output=True, text=True)
        self.output.write((done.stdout + done.stderr).encode())
        if done.returncode:
            last = (done.stdout + done.stderr).strip().splitlines() or ["no output"]
            raise RigError(f"migrate failed for the benchmark's database ({self.db.where}): {last[-1]}")

    def listed_symbols(self) -> tuple[str, ...]:
        """The active symbols in the rig's database, in symbol order."""
        with self.db.connect() as db:
            rows = db.read("SELECT symbol FROM ticker_stock WHERE active ORDER BY symbol")
        return tuple(symbol for (symbol,) in rows)

    def _list_universe(self, total: int, log: Callable[[str], None]) -> None:
        """List generated symbols until ``total`` are active: the site's ``seed_symbols`` where it exists.

        Without it (a branch from before issue 11's seed_symbols) the bench creates the rows itself,
        with names that say they are simulated.
        """
        done = self._manage("seed_symbols", "--total", str(total))
        if done.returncode and "Unknown command" in done.stderr:
            log(f"no seed_symbols command: the bench lists {total - len(self.seeded)} simulated symbols itself")
            done = self._manage("shell", "-c", _LIST_SIMULATED % {"total": total})
        if done.returncode:
            last = (done.stdout + done.stderr).strip().splitlines() or ["no output"]
            raise RigError(f"could not list {total} symbols in the benchmark's database: {last[-1]}")

    def _manage(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run((*MANAGE, *args), env=self.env, cwd=BASE_DIR, capture_output=True, text=True)
        self.output.write((done.stdout + done.stderr).encode())
        return done

    def _first_steps(self) -> int:
        """Wait until the market has stepped twice; the number of symbols it quotes."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.market.poll() is not None:
                raise RigError(f"run_market exited with {self.market.returncode}:\n{self.output_tail()}")
            with self.db.connect() as db:
                [(step, symbols)] = db.read("SELECT max(step), count(*) FROM ticker_stock WHERE active")
            if step and step >= 2:
                return symbols
            time.sleep(0.1)
        raise RigError(f"run_market did not step within {START_TIMEOUT_S} s:\n{self.output_tail()}")

    def spawn(self, command, cpu: int | None = None) -> subprocess.Popen:
        """Start ``command`` on the rig's environment (pinned to ``cpu`` if given); its output goes to the log."""
        process = subprocess.Popen(
            command, env=self.env, cwd=BASE_DIR, stdout=self.output, stderr=subprocess.STDOUT, preexec_fn=_pin(cpu)
        )
        self.processes.append(process)
        return process

    def start(self, server: Server, cpu: int | None = None) -> tuple[subprocess.Popen, int]:
        """Start ``server`` on a free port and wait until it serves: (its process, its port)."""
        port = free_port()
        process = self.spawn([part.replace("{port}", str(port)) for part in server.command], cpu)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RigError(f"{server.name} exited with {process.returncode}:\n{self.output_tail()}")
            try:
                if server.django:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/quotes/", timeout=1).close()
                else:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return process, port
            except OSError:
                time.sleep(0.2)
        self.stop(process)
        raise RigError(f"{server.name} did not start listening within {START_TIMEOUT_S} s:\n{self.output_tail()}")

    def stop(self, process: subprocess.Popen) -> None:
        """Stop one process this rig started."""
        stop(process)
        self.processes.remove(process)

    def output_tail(self, lines: int = 20) -> str:
        """The servers' last lines of output (the log itself goes with the temporary directory)."""
        self.output.flush()
        return "\n".join(Path(self.output.name).read_text(errors="replace").splitlines()[-lines:])

    def keep_log(self, path: Path) -> None:
        """Copy the servers' output so far to ``path`` (the temporary directory goes when the rig closes)."""
        self.output.flush()
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.output.name, path)

    def close(self) -> None:
        """Stop every process (servers first, the market, then Redis) and remove the temporary directories."""
        for process in reversed(self.processes):
            stop(process)
        self.processes = []
        try:
            self.redis.close()
        finally:
            if self.db:
                try:
                    self.db.close()
                except RigDatabaseError as exc:
                    print(f"could not drop the benchmark's database: {exc}", file=sys.stderr)
            if self.output:
                self.output.close()
            if self.tmp:
                self.tmp.cleanup()
