"""Fixtures shared by the suite: a private redis-server, and processes stopped by PID."""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_asyncio
import redis
from django.test.utils import override_settings

from ticker.runtime.redis_conn import RedisConfig

ROOT = Path(__file__).resolve().parent.parent

# Which test modules the database kind matters to. scripts/test runs the suite on SQLite and again on PostgreSQL;
# the second pass proves something only where the database does work whose behaviour may differ between the two
# (the market's step transaction and its lease, the ORM's queries, migrations, the lease's fencing). The modules
# in ANY_DATABASE exercise transports, browsers, Redis faults, settings or pure logic, and a second pass on
# PostgreSQL only doubled their time (issue 22: about 90% of a pass is real processes), so they are marked
# ``any_database`` and run on SQLite only. Every module is in one set or the other (checked at collection), so a
# new module must be placed on purpose.
ANY_DATABASE = {
    "test_abuse", "test_admission", "test_bench", "test_bench_alerts", "test_bench_capacity", "test_bench_connmem",
    "test_bench_fanout", "test_bench_seq",
    "test_bench_stats", "test_browser", "test_browser_accounts", "test_browser_issue23", "test_browser_personal",
    "test_browser_ops", "test_cancellation", "test_commands", "test_compose", "test_compression",
    "test_documented_commands", "test_fanout_model", "test_input_queue", "test_personal",
    "test_environment", "test_feed_honesty", "test_fuzz", "test_fuzz_ways_out", "test_gc_schedule",
    "test_independent_clients", "test_kubernetes", "test_launcher", "test_layout", "test_limits", "test_loadgen",
    "test_logs", "test_multihost", "test_outlets",
    "test_protocol", "test_query_strings", "test_ratelimit", "test_reliability", "test_scaleout", "test_screen",
    "test_security",
    "test_sentinel", "test_servers", "test_settings", "test_soak", "test_static", "test_transports",
}  # fmt: skip
DATABASE_KIND_MATTERS = {
    "test_accounts", "test_admin", "test_alerts", "test_alerts_processes", "test_bench_alerts_postgresql",
    "test_consumers", "test_e2e",
    "test_failover", "test_hub", "test_lease", "test_market",
    "test_market_loop", "test_movers_view", "test_operations", "test_ops_view", "test_services", "test_session",
    "test_views",
}  # fmt: skip


def pytest_collection_modifyitems(config, items):
    """Marks the tests of ANY_DATABASE modules ``any_database``; a module in neither set is an error."""
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        if module in ANY_DATABASE:
            item.add_marker(pytest.mark.any_database)
        elif module not in DATABASE_KIND_MATTERS:
            raise pytest.UsageError(
                f"{module}: add it to ANY_DATABASE or DATABASE_KIND_MATTERS in tests/conftest.py (does the database "
                "kind matter to it?)"
            )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, *, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """A redis-server on a private port, owned by the test run.

    ``args``: more redis-server options, e.g. ``("--replicaof", "127.0.0.1", "6380")`` for a replica.
    """

    def __init__(self, tmp: Path, *, args: tuple[str, ...] = ()):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run scripts/system-deps (apt-get install redis-server)")
        self.binary, self.tmp, self.args = binary, tmp, args
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port)
        wait_for(lambda: _pings(client), timeout=10, what="redis-server to answer")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL: the server dies at once, as in a crash (its clients' connections are reset)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


class RedisSentinel:
    """A Redis Sentinel (``redis-server SENTINEL.CONF --sentinel``, no extra package) on a private port, owned by
    the test run, watching the primary on ``primary_port`` as master ``name``."""

    def __init__(self, tmp: Path, *, name: str, primary_port: int, quorum: int, down_after_ms: int, failover_ms: int):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run scripts/system-deps (apt-get install redis-server)")
        self.port = free_port()
        self.name = name
        # Sentinel rewrites its configuration file as it learns (replicas, other sentinels, a new primary).
        self.config = tmp / f"sentinel-{self.port}.conf"
        self.config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {tmp}\n"
            f"sentinel monitor {name} 127.0.0.1 {primary_port} {quorum}\n"
            f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
            f"sentinel failover-timeout {name} {failover_ms}\n"
        )
        self.log = tmp / f"sentinel-{self.port}.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, str(self.config), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
            )
        self.client = redis.Redis(port=self.port, decode_responses=True)
        wait_for(lambda: _pings(self.client), timeout=10, what="redis-sentinel to answer")

    def master(self) -> dict:
        """What this sentinel knows of the master (SENTINEL MASTER): ip, port, flags, num-slaves, ..."""
        return self.client.sentinel_master(self.name)

    def primary_port(self) -> int | None:
        """The port of the primary this sentinel names now, or None if it cannot be asked."""
        try:
            return int(self.client.sentinel_get_master_addr_by_name(self.name)[1])
        except (redis.RedisError, TypeError):
            return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.client.close()


def _pings(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def redis_channel_layer(redis_server):
    """Every test's channel layer is the real Redis layer, on the private server."""
    layers = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_server.url], "prefix": "ticker-test", "group_expiry": 300},
        }
    }
    with override_settings(CHANNEL_LAYERS=layers, REDIS_URL=redis_server.url, REDIS=RedisConfig(url=redis_server.url)):
        yield layers


@pytest.fixture(autouse=True)
def fresh_channel_layer(redis_channel_layer):
    """Every test gets its own channel layer instance (same Redis, same settings).

    channels_redis keeps its receive state (a count, an asyncio.Lock and the loop that made them) on the
    layer instance, not per event loop, while pytest-asyncio gives every test a new loop and Django's sync
    test client runs each async view in a loop of its own. With one instance for the whole run, a test
    whose hub shared that state with a second receiver (channels' WebsocketDenier did, until
    ticker/edge/security.py's ``_Denier``) twice started its next test's hub on a lock "bound to a different
    event loop", and that hub reported the feed interrupted mid-test. A web process runs one loop for its
    life, so this is a hazard of the suite, not of the site. Changing CHANNEL_LAYERS is channels' own way
    to drop the cached instances (ChannelLayerManager listens for setting_changed), on entry and exit.
    """
    with override_settings(CHANNEL_LAYERS=copy.deepcopy(redis_channel_layer)):
        yield


@pytest.fixture
def clean_redis(redis_server):
    redis_server.client().flushdb()
    yield redis_server
    redis_server.client().flushdb()


def quotes_group_key(prefix: str) -> str:
    """The Redis key of the quotes group: channels_redis keeps each group as a sorted set of channels
    under PREFIX:group:NAME (its layout, read here from outside rather than through its private API)."""
    from ticker.wire.protocol import QUOTES_GROUP

    return f"{prefix}:group:{QUOTES_GROUP}"


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TICKER_", "PYTEST_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_SECRET_KEY="tests-only-secret-key-not-used-anywhere-else",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_COOKIES="0",
        PYTHONUNBUFFERED="1",
        # Sessions follow the wall clock (closed 30 s in every 7 minutes by default), and a closed
        # market's prices do not move: a test that waits for prices would fail in that window. Tests of
        # the session itself set their own hours.
        MARKET_SESSION_CLOSED_HOURS="0",
    )
    env.update(extra)
    return env


def printed_by_django(code: str) -> tuple[str, str]:
    """What ``code`` prints, and its stderr, run in a fresh Python after ``django.setup()``: for what must not
    happen in the test process (importing daphne installs Twisted's reactor)."""
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout.strip(), result.stderr


def make_stocks(*specs: tuple[str, str]) -> list:
    """Replace the seeded market with a small known one: (symbol, price) pairs."""
    from decimal import Decimal

    from ticker.models import Stock

    Stock.objects.all().delete()
    return [
        Stock.objects.create(
            symbol=symbol,
            name=f"{symbol} Corp.",
            price=Decimal(price),
            reference_price=Decimal(price),
            volatility=0.3,
            drift=0.05,
        )
        for symbol, price in specs
    ]


@pytest.fixture
def stocks(db):
    return make_stocks(("AAA", "100.00"), ("BBB", "50.00"), ("CCC", "20.00"))


@pytest.fixture
def traded(stocks):
    """The three symbols after five stored market steps."""
    from ticker.market import services

    market = services.market_open(interval_ms=250, seed=1)
    for i in range(5):
        services.market_step(market=market, ts=1_700_000_000_000 + i)
    return market


@pytest_asyncio.fixture
async def market(clean_redis):
    """A three-symbol market in the database (for in-process consumer tests), and this loop's hub closed after.

    Modules that run real processes define their own ``market`` fixture.
    """
    from channels.db import database_sync_to_async

    from ticker.hub import close_hub
    from ticker.market import services

    await database_sync_to_async(make_stocks)(("AAA", "100.00"), ("BBB", "50.00"), ("CCC", "20.00"))
    market = await database_sync_to_async(services.market_open)(interval_ms=250, seed=1)
    yield market
    await close_hub()
