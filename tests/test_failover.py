"""Exactly one market with a hot standby, and one site per Redis namespace, on real processes.

Two ``run_market`` processes on one site: one leads, the other stands by and
takes over when the leader is killed or stopped; a client that follows
throughout sees seq continue. Two sites on one Redis keep their own feeds.
The takeover times these tests print are quoted in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import pytest

from .clients import Follower, follow, stop_following, until
from .conftest import RedisServer, wait_for
from .processes import Site, running_site

pytestmark = pytest.mark.processes

# The bound for a standby to publish after the leader's SIGKILL (a lease of 2.5 s plus one 0.5 s poll
# is about 3 s; the rest is room for a busy machine).
TAKEOVER_S = 5.0
# Long enough for both markets to start on a busy machine (each imports Django and migrates nothing).
START_S = 30.0


def log_of(site: Site, name: str) -> str:
    return (site.tmp / f"{name}.log").read_text(errors="replace")


def start_leader_and_standby(site: Site) -> None:
    """The site's market leading, then a second one standing by (in that order, so the roles are known)."""
    site.start_market(name="market")
    wait_for(lambda: "leading the market" in log_of(site, "market"), timeout=START_S, what="the first market to lead")
    site.start_market(name="standby")
    wait_for(lambda: "standing by" in log_of(site, "standby"), timeout=START_S, what="the second market to stand by")


def frames_after(follower: Follower, since: float) -> int:
    return len([1 for at, frame in follower.frames if at >= since and frame["type"] == "quotes"])


def newer_than(follower: Follower, wall_ms: int) -> bool:
    """True once a quote produced after ``wall_ms`` (epoch ms) has arrived: only a live market makes one."""
    quotes = (q for _, frame in follower.frames if frame["type"] != "heartbeat" for q in frame["quotes"])
    return any(q["ts"] > wall_ms for q in quotes)


def test_with_two_markets_exactly_one_steps_and_the_other_stands_by(tmp_path, redis_server):
    """Two markets on one database and Redis: one steps, the other logs that it stands by and writes nothing."""
    with running_site(tmp_path, redis_server.url) as site:
        start_leader_and_standby(site)
        asyncio.run(_one_steps(site))


async def _one_steps(site: Site) -> None:
    followers, tasks = await follow(site.base, 1)
    (follower,) = followers
    try:
        since = time.monotonic()
        # 16 steps of 250 ms: 4 s in which the standby, if it stepped, would conflict with the leader.
        await until(lambda: frames_after(follower, since) >= 16, limit=30, what="16 steps of the leader")
        assert await asyncio.to_thread(site.stop, "standby") == 0
        standby, leader = log_of(site, "standby"), log_of(site, "market")
        assert "market stopped after 0 steps" in standby, standby
        assert "leading the market" not in standby
        assert "standing by: the market lease is held by" in standby and standby.count("standing by") == 1
        assert "could not be stored" not in leader and "lost the market lease" not in leader, leader
        assert follower.gaps == [] and follower.check.stale == 0 and follower.steps_back == []
    finally:
        await stop_following(tasks)


def test_after_sigkill_of_the_leader_the_standby_publishes_within_5_s_and_seq_continues(tmp_path, redis_server):
    """The leader killed: the standby publishes within 5 s; a client that followed throughout has no gap."""
    with running_site(tmp_path, redis_server.url) as site:
        start_leader_and_standby(site)
        took = asyncio.run(_takeover(site, signal.SIGKILL, TAKEOVER_S))
        assert "leading the market" in log_of(site, "standby")
        print(f"\nSIGKILL of the leader: the standby's first quotes reached the client {took:.2f} s later")


def test_sigterm_of_the_leader_hands_the_lease_over_at_once(tmp_path, redis_server):
    """A leader stopping cleanly releases the lease: the standby takes over long before the lease would expire."""
    # A 10 s lease: a takeover within 5 s can only come from the release.
    with running_site(tmp_path, redis_server.url, env={"MARKET_LEASE_TTL_S": "10"}) as site:
        start_leader_and_standby(site)
        took = asyncio.run(_takeover(site, signal.SIGTERM, 5.0))
        assert "released the market lease" in log_of(site, "market")
        print(f"\nSIGTERM of the leader: the standby's first quotes reached the client {took:.2f} s later")


async def _takeover(site: Site, sig: int, limit: float) -> float:
    followers, tasks = await follow(site.base, 2)
    try:
        await until(lambda: all(frames_after(f, 0) >= 4 for f in followers), limit=20, what="a few steps")
        stopped_ms, stopped = time.time_ns() // 1_000_000, time.monotonic()
        code = await asyncio.to_thread(site.stop, "market", sig)
        assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
        took = await until(
            lambda: all(newer_than(f, stopped_ms) for f in followers), limit=limit, what="the standby's quotes"
        )
        took = time.monotonic() - stopped  # from the signal, not from the end of stop()
        since = time.monotonic()
        await until(
            lambda: all(frames_after(f, since) >= 8 for f in followers),
            limit=20,
            what="the new leader's steps",
        )
        for follower in followers:
            # The standby quoted every symbol once with seq + 1 (or the hub resnapshotted): never a reused seq,
            # never a gap, never a step that goes back.
            assert follower.gaps == [], follower.gaps
            assert follower.check.stale == 0 and follower.steps_back == []
        return took
    finally:
        await stop_following(tasks)


def default_namespace_site(tmp: Path, redis_url: str, **env) -> Site:
    tmp.mkdir()
    # No TICKER_CHANNEL_PREFIX: each site takes the default, one per database.
    return Site(tmp, redis_url, env={"TICKER_CHANNEL_PREFIX": None, "TICKER_HEARTBEAT_S": "1", **env})


@contextlib.contextmanager
def two_sites(tmp_path: Path, **env):
    """Two sites on one private Redis, both web processes up, site 1's market stepping; site 2 has no market,
    so every quote its client got would be site 1's. Yields (one, two, redis_server)."""
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    one = default_namespace_site(tmp_path / "one", redis_server.url, **env)
    two = default_namespace_site(tmp_path / "two", redis_server.url, **env)
    try:
        for site in (one, two):
            site.start_web()
        one.start_market()
        yield one, two, redis_server
    except BaseException:
        print(one.logs(), two.logs())
        raise
    finally:
        one.close()
        two.close()
        redis_server.stop()


def test_a_second_site_on_the_same_redis_does_not_see_the_first_sites_prices(tmp_path):
    """Two sites (two databases) on one Redis with default settings: a client of site 2 gets none of site 1's."""
    with two_sites(tmp_path) as (one, two, redis_server):
        asyncio.run(_separate(one, two))
        groups = {key.decode() for key in redis_server.client().keys("*:group:quotes")}
        assert len(groups) == 2, f"each site's web process in its own namespace: {groups}"
        assert "another site's market" not in log_of(two, "web"), "site 2 never even heard site 1's batches"


def test_a_web_process_ignores_and_reports_another_sites_market_on_its_namespace(tmp_path):
    """Two sites given the same prefix by mistake: site 2's web logs one ERROR and none of site 1's prices leak."""
    with two_sites(tmp_path, TICKER_CHANNEL_PREFIX="shared-by-mistake") as (one, two, _):
        asyncio.run(_separate(one, two))
        errors = [line for line in log_of(two, "web").splitlines() if "another site's market" in line]
        assert len(errors) == 1 and " ERROR " in errors[0], errors


def assert_none_of_site_ones(other: Follower) -> None:
    """Site 2's market never ran, so its client holds seq 0 everywhere and never got a quotes frame (snapshots of
    its own database after the feed was found interrupted are fine)."""
    kinds = {f["type"] for _, f in other.frames} - {"heartbeat"}
    assert kinds == {"snapshot"}, kinds
    assert set(other.seq.values()) == {0}, other.seq


async def _separate(one: Site, two: Site) -> None:
    """Site 1's client gets live quotes for 3 s while site 2's gets its snapshot, no quotes, and 'interrupted'."""
    ones, tasks = await follow(one.base, 1)
    other = Follower(two.base)
    ready = asyncio.Event()
    tasks.append(asyncio.create_task(other.run(ready)))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        since = time.monotonic()
        # 12 steps of site 1 (3 s) while site 2's client listens.
        await until(lambda: frames_after(ones[0], since) >= 12, limit=30, what="site 1's steps")
        assert_none_of_site_ones(other)
        # Site 2's feed is not live: its own market is not running, whatever else is on the Redis (batches of
        # another site must not count as a live market either).
        await until(lambda: "interrupted" in other.feeds_since(since), limit=10, what="site 2's feed interrupted")
        await until(
            lambda: "quote feed interrupted: no batch for" in log_of(two, "web"),
            limit=10,
            what="site 2's web process to find no batch of its own",
        )
        assert_none_of_site_ones(other)
    finally:
        await stop_following(tasks)
