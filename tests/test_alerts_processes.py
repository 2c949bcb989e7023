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
    """One channel in the personal group and one in the quotes group, drained for the test's life."""

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
            if message["type"] == personal.PERSONAL_EVENT:
                self.fires += [(e["user"], e["frame"]["alert"]) for e in message["events"]]
            else:
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
