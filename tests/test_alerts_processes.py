"""Price alerts on real processes (issue 23): a leader market SIGKILLed and its standby taking over fire every
alert exactly once, stored once and delivered once (one personal message per fire on the channel layer)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections import Counter

import pytest
from channels_redis.core import RedisChannelLayer

from ticker.wire import personal, protocol

from .clients import until
from .processes import Site, running_site
from .test_failover import START_S, TAKEOVER_S, log_of, start_leader_and_standby

pytestmark = pytest.mark.processes

# manage.py shell code: a user and one alert that any quote satisfies, armed at the market's current step.
ARM = """
from django.contrib.auth.models import User
from ticker.api_alerts import current_step
from ticker.models import Alert, Stock
user, _ = User.objects.get_or_create(username="watcher")
alert = Alert.objects.create(user=user, stock=Stock.objects.get(symbol={symbol!r}), condition="price_above",
                             value="0.01", armed_step=current_step())
print(alert.pk, user.pk)
"""
# What POST /api/alerts/<id>/rearm/ does: armed again at the current step, and the market told at once.
REARM = """
from ticker.api_alerts import current_step, tell_market
from ticker.models import Alert
Alert.objects.filter(pk={pk}).update(state="armed", armed_step=current_step(), triggered_at=None, triggered_step=None,
                                     triggered_price=None, triggered_change_pct=None, read=True)
tell_market([{pk}])
print("rearmed")
"""
COUNT = """
import json
from ticker.models import Alert
print(json.dumps(list(Alert.objects.values_list("id", "state", "triggered_step"))))
"""


def arm(site: Site, symbol: str) -> tuple[int, int]:
    alert, user = shell(site, ARM.format(symbol=symbol)).split()
    return int(alert), int(user)


def shell(site: Site, code: str) -> str:
    """What ``code`` printed last (the site's processes may log to the same output)."""
    return site.manage("shell", "-c", code).strip().splitlines()[-1]


class Listener:
    """One channel in the personal group and one in the quotes group, drained for the test's life: a step's fires
    come in its batch (``events``), or in a personal message of their own when the batch could not be sent."""

    def __init__(self, site: Site, redis_url: str):
        self.layer = RedisChannelLayer(hosts=[redis_url], prefix=site.env["TICKER_CHANNEL_PREFIX"])
        self.fires: list[tuple[int, dict]] = []  # (user, alert) per event received
        self.batches: list[dict] = []

    async def start(self) -> None:
        self.personal, self.quotes = await self.layer.new_channel(), await self.layer.new_channel()
        await self.layer.group_add(personal.PERSONAL_GROUP, self.personal)
        await self.layer.group_add(protocol.QUOTES_GROUP, self.quotes)
        self.tasks = [asyncio.create_task(self._drain(self.personal)), asyncio.create_task(self._drain(self.quotes))]

    async def _drain(self, channel: str) -> None:
        while True:
            message = await self.layer.receive(channel)
            self.fires += [(user, frame["alert"]) for user, frame in map(personal.decoded, message.get("events", ()))]
            if message["type"] != personal.PERSONAL_EVENT:
                self.batches.append(message)

    def fired(self, alert_id: int) -> int:
        return sum(1 for _user, alert in self.fires if alert["id"] == alert_id)

    def steps_of(self, token: int) -> int:
        return sum(1 for batch in self.batches if batch.get("token") == token)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*self.tasks)
        await self.layer.flush()


def test_a_takeover_after_sigkill_neither_repeats_nor_skips_an_alert(tmp_path, redis_server):
    with running_site(tmp_path, redis_server.url) as site:
        start_leader_and_standby(site)
        asyncio.run(_takeover(site, redis_server.url))


async def _takeover(site: Site, redis_url: str) -> None:
    listener = Listener(site, redis_url)
    await listener.start()
    try:
        before, user = await asyncio.to_thread(arm, site, "AAPL")
        await until(lambda: listener.fired(before) >= 1, limit=START_S, what="the leader to fire the first alert")
        leader_token = listener.batches[-1]["token"]
        assert await asyncio.to_thread(site.stop, "market", signal.SIGKILL) == -signal.SIGKILL
        killed = time.monotonic()
        # Armed while no market leads (or as the standby takes over): the new leader must fire it.
        after, _ = await asyncio.to_thread(arm, site, "MSFT")
        await until(
            lambda: any(b.get("token", 0) > leader_token for b in listener.batches),
            limit=TAKEOVER_S + START_S,
            what="the standby to lead",
        )
        new_token = max(b["token"] for b in listener.batches)
        await until(lambda: listener.fired(after) >= 1, limit=10, what="the new leader to fire the second alert")
        # Eight more steps of the new leader: time enough for any repeat to show.
        await until(lambda: listener.steps_of(new_token) >= 8, limit=20, what="the new leader's steps")
        print(f"\nthe second alert was delivered {time.monotonic() - killed:.2f} s after the leader's SIGKILL")
        assert "leading the market" in log_of(site, "standby")
        assert listener.fired(before) == 1 and listener.fired(after) == 1, listener.fires
        assert {u for u, _alert in listener.fires} == {user}
        stored = json.loads(await asyncio.to_thread(shell, site, COUNT))
        assert sorted(s for s in stored) == sorted(
            [[before, "triggered", _step(listener, before)], [after, "triggered", _step(listener, after)]]
        )
        assert Counter(alert["id"] for _u, alert in listener.fires) == {before: 1, after: 1}
        # Re-armed, the new leader hears of it on the channel layer (its book reads only new ids by itself).
        await asyncio.to_thread(shell, site, REARM.format(pk=before))
        await until(lambda: listener.fired(before) == 2, limit=10, what="the re-armed alert to fire again")
        steps = [alert["step"] for _u, alert in listener.fires if alert["id"] == before]
        assert steps[1] > steps[0]
    finally:
        await listener.close()


def _step(listener: Listener, alert_id: int) -> int:
    (step,) = [alert["step"] for _u, alert in listener.fires if alert["id"] == alert_id]
    return step


# manage.py shell code: N users, a session each, and one alert each on one symbol that any quote satisfies, armed at
# the market's current step (so they all cross at the next one); prints {user id: [session key, alert id]}.
CROWD = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from ticker.api_alerts import current_step
from ticker.models import Alert, Stock
users = User.objects.bulk_create([User(username=f"crowd-{{i:04d}}") for i in range({count})])
stock, step, out = Stock.objects.get(symbol={symbol!r}), current_step(), {{}}
alerts = Alert.objects.bulk_create(
    [Alert(user=u, stock=stock, condition="price_above", value="0.01", armed_step=step) for u in users]
)
for user, alert in zip(users, alerts):
    session = SessionStore()
    session[SESSION_KEY], session[BACKEND_SESSION_KEY] = str(user.pk), "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    out[user.pk] = [session.session_key, alert.pk]
print(json.dumps(out))
"""
CROWD_SIZE = 1000


def test_a_thousand_alerts_crossing_in_one_step_reach_a_thousand_users_each_once(tmp_path, redis_server):
    """Issue 23: 1,000 users, each on a WebSocket of their own (signed in by the session cookie), 1,000 alerts on
    one symbol crossing in one step: 1,000 fires, each delivered once, to its own user and no other."""
    # Every client comes from 127.0.0.1: the per-address share is lifted, as for the soak's 1,000-client burst.
    env = {"TICKER_MAX_CONNECTIONS_PER_ADDRESS": "0", "TICKER_MAX_CONNECTIONS": "2000"}
    with running_site(tmp_path, redis_server.url, env=env) as site:
        made = json.loads(shell(site, CROWD.format(count=CROWD_SIZE, symbol="AAPL")))
        crowd = {int(user): (session, alert) for user, (session, alert) in made.items()}
        got = asyncio.run(_crowd(site, crowd))
    assert sorted(got) == sorted(crowd)
    for user, alerts in got.items():
        assert [a["id"] for a in alerts] == [crowd[user][1]], f"user {user} got {alerts}"
        assert alerts[0]["state"] == "triggered" and alerts[0]["symbol"] == "AAPL"


async def _crowd(site: Site, crowd: dict) -> dict[int, list[dict]]:
    """Opens every user's socket (100 at a time) and an anonymous watcher on every symbol, starts the market, and
    reads until each user has its alert and the watcher has seen two steps past the last fire, so that a second
    copy of any alert, which would come with its step, would have been read."""
    import websockets

    def connect(cookie: dict):
        return websockets.connect(
            f"ws://127.0.0.1:{site.port}/ws/quotes/", origin=site.base, additional_headers=cookie, max_queue=None
        )

    users = list(crowd.items())
    sockets = []
    for start in range(0, len(users), 100):
        batch = users[start : start + 100]
        sockets += await asyncio.gather(*(connect({"Cookie": f"sessionid={session}"}) for _, (session, _) in batch))
    watcher = await connect({})
    await watcher.send(json.dumps({"action": "subscribe", "symbols": ["*"]}))
    got: dict[int, list[dict]] = {user: [] for user in crowd}
    seen_step = [0]

    async def read(user, ws):
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "alert":
                    got[user].append(frame["alert"])

    async def watch():
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                frame = json.loads(await watcher.recv())
                seen_step[0] = max(seen_step[0], frame.get("step") or 0)

    tasks = [asyncio.create_task(read(user, ws)) for (user, _), ws in zip(users, sockets, strict=True)]
    tasks.append(asyncio.create_task(watch()))
    try:
        site.start_market()  # after every socket is in: the market's first steps fire every alert
        # 60 s: the market's start-up, then 1,000 sockets read on a shared 2-core machine.
        await until(lambda: all(got.values()), limit=60, what="every user's alert")
        last_fire = max(alert["step"] for alerts in got.values() for alert in alerts)
        await until(lambda: seen_step[0] >= last_fire + 2, limit=30, what="two more market steps")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in [*sockets, watcher]), return_exceptions=True)
    return {user: alerts for user, alerts in got.items() if alerts}
