"""Redis high availability through Sentinel, on real processes: the primary dies, a replica takes over, nothing is lost.

A primary redis-server, a replica of it, and three sentinels (``redis-server --sentinel``, quorum 2) on private
ports; two daphne processes and the market configured only through the sentinels (their REDIS_URL points at a
closed port: were it used, nothing would work). The figures printed are quoted in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.seq import SeqFollower

from .clients import Follower, follow, get_json, stop_following, until
from .conftest import RedisSentinel, RedisServer, free_port, wait_for
from .processes import running_site

pytestmark = pytest.mark.processes

MASTER = "ticker"
# Sentinel takes the primary for down after 1 s without an answer; a failover that stalls is retried after 5 s.
DOWN_AFTER_MS, FAILOVER_MS = 1000, 5000


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
        primary.stop()


def test_primary_killed_sentinel_promotes_the_replica_and_every_process_follows(tmp_path, sentinel_redis):
    """SIGKILL of the Redis primary: clients are told "interrupted", then get a snapshot and live updates again
    within 10 s, from both web processes and the market, with no seq gap left unrepaired."""
    primary, replica, sentinels = sentinel_redis
    env = {
        "REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in sentinels),
        "REDIS_SENTINEL_MASTER": MASTER,
        "TICKER_HEARTBEAT_S": "1",
    }
    closed = f"redis://127.0.0.1:{free_port()}/0"  # only its database number is used
    with running_site(tmp_path, closed, market=True, env=env) as site:
        second = site.start_web(name="web2")
        asyncio.run(_failover(site, [site.base, second], primary, replica, sentinels))


async def _failover(site, bases: list[str], primary, replica, sentinels) -> None:
    followers, tasks = [], []
    for base in bases:
        more, started = await follow(base, 2)
        followers += more
        tasks += started
    try:
        await until(lambda: all(f.feeds_since(0)[-1:] == ["live"] for f in followers), limit=5, what="live heartbeats")

        await asyncio.to_thread(primary.kill)
        killed = time.monotonic()
        told = await until(
            lambda: all("interrupted" in f.feeds_since(killed) for f in followers),
            limit=5,
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
        assert all(p.poll() is None for p in site.processes.values()), "web and market processes stay up"
        for f in followers:
            interrupted = min(at for at, fr in f.frames if at >= killed and fr.get("feed") == "interrupted")
            assert any(fr["type"] == "snapshot" and at > interrupted for at, fr in f.frames), (
                '"interrupted" is followed by a snapshot'
            )
            assert _unrepaired_gaps(f) == [], "every seq gap is followed by a snapshot that covers it"
        gaps = sum(len(f.gaps) for f in followers)
        print(
            f"\nsentinel failover: clients told in {told:.2f} s; replica promoted {promoted:.2f} s and "
            f"every client live again {recovered:.2f} s after the kill; {gaps} seq gaps in quotes frames"
        )
    finally:
        await stop_following(tasks)


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
