"""Redis high availability through Sentinel, on real processes: the primary dies, a replica takes over, nothing is lost.

A primary redis-server, a replica of it, and three sentinels (``redis-server --sentinel``, quorum 2) on private
ports; two daphne processes and the market configured only through the sentinels (their REDIS_URL points at a
closed port: were it used, nothing would work). The figures printed are quoted in docs/reliability.md.
"""

from __future__ import annotations

import ast
import asyncio
import re
import signal
import time

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from bench.seq import SeqFollower
from ticker.runtime import redis_conn
from ticker.runtime.launcher import choose_redis

from .clients import Follower, follow, get_json, stop_following, until
from .conftest import RedisSentinel, RedisServer, free_port, wait_for
from .processes import running_site
from .test_settings import start

MASTER = "ticker"
# Sentinel takes the primary for down after 1 s without an answer. A failover attempt that fails (a split vote
# among the three sentinels: each votes for the first that asks) is tried again only twice the failover timeout
# after it began: at 5 s that was 10 s, the whole of the test's bound, and a fresh clone's run failed so (promoted
# 12 s after the fault). At 3 s a second attempt starts 6 s after the first, and the promotion it waits for takes
# well under the 3 s it allows (one replica, already in sync).
DOWN_AFTER_MS, FAILOVER_MS = 1000, 3000


def test_settings_build_a_sentinel_host_for_the_channel_layer():
    """With REDIS_SENTINELS and REDIS_SENTINEL_MASTER, the layer's one host is a Sentinel entry; REDIS_URL gives its
    password and database only."""
    result = start(
        "settings.CHANNEL_LAYERS['default']['CONFIG']['hosts']",
        REDIS_URL="redis://:s3cret@ignored:1/3",
        REDIS_SENTINELS="10.0.0.1:26379, 10.0.0.2:26380,sentinel-3",
        REDIS_SENTINEL_MASTER="ticker",
    )
    assert result.returncode == 0, result.stderr
    (host,) = ast.literal_eval(result.stdout.strip())
    assert host["sentinels"] == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("sentinel-3", 26379)]
    assert (host["master_name"], host["db"], host["password"]) == ("ticker", 3, "s3cret")
    assert "ignored" not in repr(host)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_SENTINELS": "10.0.0.1:26379"}, "REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not"),
        ({"REDIS_SENTINEL_MASTER": "ticker"}, "REDIS_SENTINEL_MASTER='ticker' is set but REDIS_SENTINELS is not"),
        ({"REDIS_SENTINELS": "10.0.0.1:port", "REDIS_SENTINEL_MASTER": "t"}, "entry '10.0.0.1:port' is not HOST:PORT"),
        ({"REDIS_SENTINELS": "h:70000", "REDIS_SENTINEL_MASTER": "t"}, "entry 'h:70000' is not HOST:PORT"),
        (
            {"REDIS_SENTINELS": "h:1", "REDIS_SENTINEL_MASTER": "t", "REDIS_URL": "unix:///tmp/r.sock"},
            "REDIS_URL is a unix:// socket",
        ),
        (
            {"REDIS_SENTINELS": "h:1", "REDIS_SENTINEL_MASTER": "t", "REDIS_URL": "redis://x/zero"},
            "the database must be a number",
        ),
        ({"REDIS_URL": "http://:pw@example.com/"}, "REDIS_URL='http://:***@example.com/' is not a Redis URL"),
    ],
)
def test_malformed_redis_settings_are_refused_with_the_fix(env, message):
    """Each malformed Redis setting stops start-up with a message naming the variable and how to fix it."""
    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        redis_conn.from_env(env, default_url="redis://127.0.0.1:6379/0")


def test_settings_refuse_a_malformed_sentinel_list_at_start_up():
    """The real settings module refuses it too, before any process starts serving."""
    result = start(REDIS_SENTINELS="a:b", REDIS_SENTINEL_MASTER="ticker")
    assert result.returncode != 0
    assert "REDIS_SENTINELS entry 'a:b' is not HOST:PORT" in result.stderr


@pytest.mark.processes
def test_the_run_command_checks_redis_through_sentinel(tmp_path):
    """scripts/run with REDIS_SENTINELS: the primary is found through the sentinels; none answering is an error."""
    primary = RedisServer(tmp_path)
    primary.start()
    sentinel = None
    try:
        sentinel = RedisSentinel(
            tmp_path, name=MASTER, primary_port=primary.port, quorum=1, down_after_ms=5000, failover_ms=FAILOVER_MS
        )
        env = {"REDIS_SENTINELS": f"127.0.0.1:{sentinel.port}", "REDIS_SENTINEL_MASTER": MASTER}
        choice = choose_redis(env, default_url=f"redis://127.0.0.1:{free_port()}/0")
        assert choice.process is None and f"master 'ticker' through Sentinel at 127.0.0.1:{sentinel.port}" in choice.how
        with pytest.raises(SystemExit, match=r"master 'other' .* is not reachable .* or unset REDIS_SENTINELS"):
            choose_redis({**env, "REDIS_SENTINEL_MASTER": "other"})
        with pytest.raises(SystemExit, match=r"is not reachable"):
            choose_redis({**env, "REDIS_SENTINELS": f"127.0.0.1:{free_port()}"})
    finally:
        if sentinel:
            sentinel.stop()
        primary.stop()


@pytest.fixture
def sentinel_redis(tmp_path):
    """(primary, replica, sentinels), replication up and every sentinel knowing the replica and the two others."""
    (tmp_path / "primary").mkdir()
    (tmp_path / "replica").mkdir()
    (tmp_path / "sentinels").mkdir()
    primary = RedisServer(tmp_path / "primary")
    primary.start()
    replica = RedisServer(tmp_path / "replica", args=("--replicaof", "127.0.0.1", str(primary.port)))
    sentinels: list[RedisSentinel] = []
    try:
        replica.start()
        wait_for(
            lambda: replica.client().info("replication").get("master_link_status") == "up",
            timeout=20,
            what="the replica to sync with the primary",
        )
        for _ in range(3):
            sentinels.append(
                RedisSentinel(
                    tmp_path / "sentinels",
                    name=MASTER,
                    primary_port=primary.port,
                    quorum=2,
                    down_after_ms=DOWN_AFTER_MS,
                    failover_ms=FAILOVER_MS,
                )
            )
        # Sentinels find the replica through the primary's INFO and each other through its hello channel (every
        # 2 s); until they do, a failover cannot be agreed on. 30 s: a busy machine, several rounds of each.
        wait_for(
            lambda: all(
                int(s.master()["num-slaves"]) == 1 and int(s.master()["num-other-sentinels"]) == 2 for s in sentinels
            ),
            timeout=30,
            what="every sentinel to know the replica and the other sentinels",
        )
        yield primary, replica, sentinels
    finally:
        for sentinel in sentinels:
            sentinel.stop()
        replica.stop()
        primary.kill()  # disposable, and SIGKILL also ends a primary stopped by SIGSTOP


@pytest.mark.processes
@pytest.mark.parametrize("fault", ["killed", "hung"])
def test_primary_lost_sentinel_promotes_the_replica_and_every_process_follows(tmp_path, sentinel_redis, fault):
    """The Redis primary SIGKILLed (its connections reset at once) or hung by SIGSTOP (connections stay open, no
    answer ever comes): clients are told "interrupted", then get a snapshot and live updates again within 10 s,
    from both web processes and the market, with no seq gap left unrepaired."""
    primary, replica, sentinels = sentinel_redis
    env = {
        "REDIS_SENTINELS": env_sentinels(sentinels),
        "REDIS_SENTINEL_MASTER": MASTER,
        "TICKER_HEARTBEAT_S": "1",
    }
    closed = f"redis://127.0.0.1:{free_port()}/0"  # only its database number is used
    with running_site(tmp_path, closed, market=True, env=env) as site:
        second = site.start_web(name="web2")
        asyncio.run(_failover(site, [site.base, second], primary, replica, sentinels, fault))


async def _failover(site, bases: list[str], primary, replica, sentinels, fault: str) -> None:
    followers, tasks = [], []
    for base in bases:
        more, started = await follow(base, 2)
        followers += more
        tasks += started
    try:
        await until(lambda: all(f.feeds_since(0)[-1:] == ["live"] for f in followers), limit=5, what="live heartbeats")

        # The helper other code uses for Redis (ticker.runtime.redis_conn), made before the kill, follows it too.
        helper = redis_conn.from_env(
            {"REDIS_SENTINELS": env_sentinels(sentinels), "REDIS_SENTINEL_MASTER": MASTER}, default_url="redis://x/0"
        ).client(decode_responses=True)
        assert helper.info("server")["tcp_port"] == primary.port

        if fault == "killed":
            await asyncio.to_thread(primary.kill)
        else:
            # A hung primary (or a host gone without a word): reads on its connections time out (redis-py's
            # socket_timeout, 5 s by default) rather than fail, so this is the slower of the two.
            primary.process.send_signal(signal.SIGSTOP)
        killed = time.monotonic()
        told = await until(
            lambda: all("interrupted" in f.feeds_since(killed) for f in followers),
            # Killed: the web processes' receive fails at once. Hung: no batch for 3 s (the hub's staleness bound).
            limit=6,
            what='every client to be told "interrupted"',
        )
        # Sentinel's own part: 1 s to take the primary for down, then agreeing on the failover and promoting.
        await until(
            lambda: all(s.primary_port() == replica.port for s in sentinels),
            limit=10,
            what="the sentinels to name the replica as the new primary",
        )
        promoted = time.monotonic() - killed
        # The bound: web processes and the market follow within 10 s of the primary's death. A client
        # is whole again when it holds a snapshot taken after the kill and a live update after that snapshot.
        await until(
            lambda: all(_live_after_a_snapshot(f, killed) for f in followers),
            limit=10 - (time.monotonic() - killed),
            what="every client to get a snapshot, then live updates, through the new primary",
        )
        recovered = time.monotonic() - killed
        # The market published through the new primary (the quotes above came from it): what it stored is what
        # clients reach.
        stored = {q["symbol"]: q["seq"] for q in get_json(site.base, "/api/quotes/")["quotes"]}
        await until(
            lambda: all(all(f.seq.get(s, 0) >= seq for s, seq in stored.items()) for f in followers),
            limit=5,
            what="every client to hold the stored prices",
        )
        await until(
            lambda: all(f.feeds_since(killed)[-1:] == ["live"] for f in followers),
            limit=5,
            what="the heartbeat to say live again",
        )
        assert replica.client().info("replication")["role"] == "master"
        # A command on a connection to the lost primary fails (reset, or a read timeout if it hung); the next one
        # asks the sentinels again and reaches the new primary.
        await until(lambda: _port(helper) == replica.port, limit=10, what="the Redis helper to reach the new primary")
        helper.close()
        assert all(p.poll() is None for p in site.processes.values()), "web and market processes stay up"
        for f in followers:
            interrupted = min(at for at, fr in f.frames if at >= killed and fr.get("feed") == "interrupted")
            assert any(fr["type"] == "snapshot" and at > interrupted for at, fr in f.frames), (
                '"interrupted" is followed by a snapshot'
            )
            assert _unrepaired_gaps(f) == [], "every seq gap is followed by a snapshot that covers it"
        gaps = sum(len(f.gaps) for f in followers)
        print(
            f"\nsentinel failover, primary {fault}: clients told in {told:.2f} s; replica promoted {promoted:.2f} s "
            f"and every client live again {recovered:.2f} s after the fault; {gaps} seq gaps in quotes frames"
        )
    finally:
        await stop_following(tasks)


def _port(client) -> int | None:
    try:
        return client.info("server")["tcp_port"]
    except redis.RedisError:
        return None


def env_sentinels(sentinels: list[RedisSentinel]) -> str:
    return ",".join(f"127.0.0.1:{s.port}" for s in sentinels)


def _live_after_a_snapshot(follower: Follower, since: float) -> bool:
    snapshots = [at for at, frame in follower.frames if at > since and frame["type"] == "snapshot"]
    return bool(snapshots) and bool(follower.quotes_since(snapshots[0] + 1e-9))


def _unrepaired_gaps(follower: Follower) -> list[str]:
    """Each seq gap in a quotes frame (symbol, held, got) not followed by a snapshot holding that symbol at ``got``
    or later: the client's view of that symbol would stay unverified."""
    check, pending = SeqFollower(), {}
    for _, frame in follower.frames:
        if frame["type"] == "snapshot":
            for quote in frame["quotes"]:
                if quote["symbol"] in pending and quote["seq"] >= pending[quote["symbol"]][1]:
                    del pending[quote["symbol"]]
        before = len(check.gaps)
        check.take(frame)
        for symbol, held, got in check.gaps[before:]:
            pending[symbol] = (held, got)
    return [f"{symbol} seq {held} -> {got}" for symbol, (held, got) in pending.items()]


@pytest.mark.processes
def test_the_operations_reports_and_view_work_through_sentinel(tmp_path, settings):
    """Issue 20: the operations view built its own Redis client, which broke under Sentinel (a TypeError on every
    request, a 500). Now reports and view take their client from ticker.runtime.redis_conn: through a
    sentinel (REDIS_URL a closed port), a report is written and the view lists it, with Redis's own figures."""
    from ticker.ops import registry as ops

    (tmp_path / "primary").mkdir()
    primary = RedisServer(tmp_path / "primary")
    primary.start()
    sentinel = RedisSentinel(
        tmp_path, name=MASTER, primary_port=primary.port, quorum=1, down_after_ms=DOWN_AFTER_MS, failover_ms=FAILOVER_MS
    )
    try:
        config = redis_conn.RedisConfig.parse(
            url=f"redis://127.0.0.1:{free_port()}/0", sentinels=f"127.0.0.1:{sentinel.port}", master_name=MASTER
        )
        settings.REDIS = config
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [config.channel_layer_host()], "prefix": "ticker-sentinel-ops"},
            }
        }

        async def report_and_read() -> dict:
            task = asyncio.create_task(ops.report("web", lambda: {"role": "web", "host": "h", "pid": 7}))
            try:
                await until(lambda: primary.client().exists(ops.registry_key()), limit=10, what="a report")
                return await ops.read_reports()
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        view = asyncio.run(report_and_read())
        assert view["redis"]["ok"], view["redis"]
        assert view["redis"]["version"] == primary.client().info()["redis_version"]
        assert [entry["pid"] for entry in view["web"]] == [7]
    finally:
        sentinel.stop()
        primary.stop()
