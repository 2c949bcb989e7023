"""The market's publisher: nothing that was stored is left unpublished (pure logic, a fake layer)."""

import time
from decimal import Decimal

import pytest

from ticker.market.loop import Publisher, _publish_within_lease
from ticker.market.prices import Session, Tick
from ticker.market.services import StepResult

pytestmark = pytest.mark.asyncio


class FlakyLayer:
    def __init__(self, failures: int):
        self.failures = failures
        self.sent: list[dict] = []

    async def group_send(self, group, message):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("redis went away")
        self.sent.append(message)


def tick(symbol: str, seq: int, halted: bool = False) -> Tick:
    return Tick(symbol, Decimal("10.00"), Decimal("10.00"), seq, 1000 + seq, halted)


async def test_quotes_from_a_failed_send_go_out_with_the_next_batch():
    """A halt published while Redis is away still reaches the web processes with the next step."""
    layer = FlakyLayer(failures=1)
    publisher = Publisher(layer)
    assert not await publisher.publish(StepResult(step=1, ticks=[tick("AAA", 5, halted=True), tick("BBB", 3)]))
    assert await publisher.publish(StepResult(step=2, ticks=[tick("BBB", 4)]))
    (message,) = layer.sent
    assert message["step"] == 2
    assert [(q["symbol"], q["seq"], q["halted"]) for q in message["quotes"]] == [("AAA", 5, True), ("BBB", 4, False)]
    assert message["carried"] is True, "its seq may skip: web processes resnapshot their clients (tests/test_hub.py)"


async def _taken_over() -> bool:
    return False


async def _unreachable() -> bool:
    raise ConnectionError("the database is cut off")


async def _still_ours() -> bool:
    return True


async def test_a_step_that_took_a_whole_lease_is_not_published_and_goes_out_with_the_next():
    """A step whose database work outlasted the lease (a partition, issue 25) sends nothing unless the lease row
    says no standby took over: a standby may lead by now. If the next step renews the lease, its batch carries
    the held quotes."""
    for ours in (_taken_over, _unreachable):
        layer = FlakyLayer(failures=0)
        publisher = Publisher(layer)
        await _publish_within_lease(publisher, StepResult(step=1, ticks=[tick("AAA", 5)]), took=2.6, ttl=2.5, ours=ours)
        assert layer.sent == []
        await _publish_within_lease(
            publisher, StepResult(step=2, ticks=[tick("BBB", 4)]), took=0.01, ttl=2.5, ours=ours
        )
        (message,) = layer.sent
        assert message["step"] == 2 and [(q["symbol"], q["seq"]) for q in message["quotes"]] == [("AAA", 5), ("BBB", 4)]
        assert message["carried"] is True
        await _publish_within_lease(
            publisher, StepResult(step=3, ticks=[tick("BBB", 5)]), took=0.01, ttl=2.5, ours=ours
        )
        assert "carried" not in layer.sent[-1], "a batch of its own step alone continues every seq"


async def test_a_step_that_was_only_slow_is_published_when_the_lease_is_still_ours():
    """A loaded machine, no standby: the step took a lease's length, but nobody took the lease over, so its
    clients get it as it is (holding it made every client of a 2-core test run take a snapshot: test_bench)."""
    layer = FlakyLayer(failures=0)
    publisher = Publisher(layer)
    await _publish_within_lease(
        publisher, StepResult(step=1, ticks=[tick("AAA", 5)]), took=2.6, ttl=2.5, ours=_still_ours
    )
    (message,) = layer.sent
    assert message["step"] == 1 and "carried" not in message


async def test_delistings_are_published_and_retried():
    """A deactivated symbol is announced in 'delisted', also after a failed send."""
    layer = FlakyLayer(failures=1)
    publisher = Publisher(layer)
    await publisher.publish(StepResult(step=1, ticks=[], delisted=["CCC"]))
    await publisher.publish(StepResult(step=2, ticks=[]))
    assert layer.sent[0]["delisted"] == ["CCC"]


async def test_a_quiet_step_is_still_published_as_the_market_heartbeat():
    """A step with no change sends its step number and no quotes: web processes see the market is alive."""
    layer = FlakyLayer(failures=0)
    assert await Publisher(layer).publish(StepResult(step=7, ticks=[]))
    session = Session("open", 390_000, 0)
    assert await Publisher(layer).publish(StepResult(step=8, ticks=[], session=session))
    # Each batch says when it was sent (ms since the epoch): web processes measure the feed's lag from it.
    assert all(abs(message.pop("ts") / 1000 - time.time()) < 60 for message in layer.sent)
    assert layer.sent == [
        {"type": "quote.batch", "step": 7, "quotes": [], "session": None},
        {"type": "quote.batch", "step": 8, "quotes": [], "session": {"state": "open", "until": 390_000}},
    ]
