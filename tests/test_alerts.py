"""Price alerts (issue 23): the API, the market's evaluation inside the step, and the one personal message."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import hypothesis
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.test import Client
from hypothesis import strategies as st

from ticker.market import alert_json, alert_rows, alerts, services
from ticker.market import lease as leases
from ticker.market.loop import Publisher
from ticker.market.prices import Instrument, Market, Schedule, Tick, dt_years
from ticker.models import ALERTS_MOST_PER_USER, Alert, MarketLease, Stock
from ticker.wire import personal, protocol

TOKEN = "a" * 32  # a CSRF secret: the cookie and the header carry the same


def client_for(user: User) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.cookies["csrftoken"] = TOKEN
    return client


def post(client: Client, path: str, body=None, *, csrf: bool = True):
    headers = {"HTTP_X_CSRFTOKEN": TOKEN} if csrf else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body or {})
    return client.post(path, data, content_type="application/json", **headers)


@pytest.fixture
def alice(db):
    return User.objects.create_user("alice", password="x-unused-9271")


@pytest.fixture
def bob(db):
    return User.objects.create_user("bob", password="x-unused-9271")


def new_alert(client, **fields):
    body = {"symbol": "AAA", "condition": "price_above", "value": "101.5", "note": "hi", **fields}
    return post(client, "/api/alerts/", body)


# -- the API -----------------------------------------------------------------------------------------------------


def test_create_list_rearm_delete(stocks, alice):
    client = client_for(alice)
    MarketLease.objects.create(step=41)
    answer = new_alert(client, symbol="aaa")
    assert answer.status_code == 201, answer.content
    made = answer.json()
    assert made["symbol"] == "AAA" and made["state"] == "armed" and made["value"] == "101.5"
    assert made["price"] is made["change_pct"] is made["step"] is made["triggered_at"] is None
    assert set(made) == {
        "id", "symbol", "condition", "value", "note", "state", "created_at", "triggered_at", "price",
        "change_pct", "step", "read",
    }  # fmt: skip
    assert Alert.objects.get(pk=made["id"]).armed_step == 41
    second = new_alert(client, condition="change_pct_below", value=-2).json()
    listed = client.get("/api/alerts/").json()
    assert listed["alerts"][1] == made  # the same shape read back
    assert [a["id"] for a in listed["alerts"]] == [second["id"], made["id"]] and listed["unread"] == 0
    Alert.objects.filter(pk=made["id"]).update(state="triggered", triggered_price=Decimal("102"), read=False)
    assert client.get("/api/alerts/").json()["unread"] == 1
    assert post(client, "/api/alerts/read/").json() == {"marked": 1, "unread": 0}
    MarketLease.objects.filter().update(step=50)
    rearmed = post(client, f"/api/alerts/{made['id']}/rearm/")
    assert rearmed.status_code == 200 and rearmed.json()["state"] == "armed" and rearmed.json()["price"] is None
    assert Alert.objects.get(pk=made["id"]).armed_step == 50
    assert client.delete(f"/api/alerts/{made['id']}/", HTTP_X_CSRFTOKEN=TOKEN).status_code == 204
    assert list(Alert.objects.values_list("id", flat=True)) == [second["id"]]


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"symbol": "ZZZ"}, "unknown_symbol", None),
        ({"symbol": "bad symbol\x00"}, "unknown_symbol", None),
        ({"symbol": 5}, "bad_symbol", "symbol"),
        ({"condition": "price_sideways"}, "bad_condition", "condition"),
        ({"condition": None}, "bad_condition", "condition"),
        ({"value": "abc"}, "bad_value", "value"),
        ({"value": "NaN"}, "bad_value", "value"),
        ({"value": "Infinity"}, "bad_value", "value"),
        ({"value": "-inf"}, "bad_value", "value"),
        ({"value": "1.23456"}, "bad_value", "value"),
        ({"value": "12345678901"}, "bad_value", "value"),
        ({"value": "1e30"}, "bad_value", "value"),
        ({"value": True}, "bad_value", "value"),
        ({"value": None}, "bad_value", "value"),
        ({"value": "0"}, "bad_value", "value"),
        ({"note": "x" * 201}, "bad_note", "note"),
        ({"note": 7}, "bad_note", "note"),
        ({"colour": "red"}, "unknown_field", "colour"),
    ],
)
def test_bad_input_is_a_json_400_naming_it_and_nothing_is_stored(stocks, alice, fields, code, field):
    answer = new_alert(client_for(alice), **fields)
    assert answer.status_code == 400, answer.content
    error = answer.json()
    assert error["type"] == "error" and error["code"] == code and error["message"]
    if field is not None:
        assert error["field"] == field
    assert not Alert.objects.exists()


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", '{"symbol": "AAA", "value": NaN}', b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_refused(stocks, alice, body):
    answer = post(client_for(alice), "/api/alerts/", body)
    assert answer.status_code == 400 and answer.json()["code"] == "bad_json"
    assert not Alert.objects.exists()


def test_a_delisted_symbol_is_refused(stocks, alice):
    Stock.objects.filter(symbol="AAA").update(active=False)
    answer = new_alert(client_for(alice))
    assert answer.status_code == 400 and answer.json()["code"] == "unknown_symbol" and "AAA" in answer.json()["message"]


def test_a_change_pct_may_be_negative_but_a_price_may_not(stocks, alice):
    client = client_for(alice)
    assert new_alert(client, condition="change_pct_below", value="-3.25").status_code == 201
    assert new_alert(client, condition="price_below", value="-3.25").json()["code"] == "bad_value"


def test_the_cap_per_user_is_a_clear_error(stocks, alice, bob):
    aaa = Stock.objects.get(symbol="AAA")
    Alert.objects.bulk_create(
        Alert(user=alice, stock=aaa, condition="price_above", value=i + 1) for i in range(ALERTS_MOST_PER_USER)
    )
    answer = new_alert(client_for(alice))
    assert answer.status_code == 400 and answer.json()["code"] == "too_many_alerts"
    assert str(ALERTS_MOST_PER_USER) in answer.json()["message"] and answer.json()["most"] == ALERTS_MOST_PER_USER
    assert Alert.objects.count() == ALERTS_MOST_PER_USER
    assert new_alert(client_for(bob)).status_code == 201  # the cap is per user


def test_anonymous_gets_a_json_401(stocks, db):
    client = Client(enforce_csrf_checks=True)
    for answer in (client.get("/api/alerts/"), post(client, "/api/alerts/", {}), client.delete("/api/alerts/1/")):
        assert answer.status_code == 401 and answer.json()["code"] == "not_signed_in"


def test_writes_without_the_csrf_token_are_a_json_403_naming_it(stocks, alice):
    client = client_for(alice)
    made = new_alert(client).json()
    refused = [
        post(client, "/api/alerts/", {"symbol": "AAA", "condition": "price_above", "value": "1"}, csrf=False),
        post(client, f"/api/alerts/{made['id']}/rearm/", csrf=False),
        post(client, "/api/alerts/read/", csrf=False),
        client.delete(f"/api/alerts/{made['id']}/"),
    ]
    for answer in refused:
        error = answer.json()
        assert answer.status_code == 403 and error["code"] == "csrf_failed" and "CSRF" in error["message"]
    assert list(Alert.objects.values_list("id", flat=True)) == [made["id"]]


def test_someone_elses_alert_is_as_missing_as_none(stocks, alice, bob):
    made = new_alert(client_for(alice)).json()
    other = client_for(bob)
    for answer in (
        other.delete(f"/api/alerts/{made['id']}/", HTTP_X_CSRFTOKEN=TOKEN),
        post(other, f"/api/alerts/{made['id']}/rearm/"),
        other.delete("/api/alerts/999999/", HTTP_X_CSRFTOKEN=TOKEN),
    ):
        assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    assert other.get("/api/alerts/").json() == {"alerts": [], "unread": 0}
    assert Alert.objects.filter(pk=made["id"], state="armed").exists()


def test_other_methods_are_a_json_405(stocks, alice):
    client = client_for(alice)
    answer = client.put("/api/alerts/", "{}", content_type="application/json", HTTP_X_CSRFTOKEN=TOKEN)
    assert answer.status_code == 405 and answer["Allow"] == "GET, HEAD, POST"
    assert client.get("/api/alerts/1/rearm/").status_code == 405


# -- the market ----------------------------------------------------------------------------------------------------


def volatile(stocks):
    Stock.objects.update(volatility=3.0)
    return services.market_open(interval_ms=250, seed=3)


def arm(user, symbol="AAA", condition="price_above", value="0.01", step=0, **fields):
    stock = Stock.objects.get(symbol=symbol)
    return Alert.objects.create(user=user, stock=stock, condition=condition, value=value, armed_step=step, **fields)


def run(market, book, steps, *, start=0):
    return [services.market_step(market=market, ts=(start + i) * 250, alerts=book) for i in range(steps)]


def test_an_alert_fires_once_at_the_first_step_whose_quote_satisfies_it(stocks, alice):
    market = volatile(stocks)
    book = alerts.AlertBook.load()
    run(market, book, 2)
    price = market.ticks["AAA"].price
    above = arm(alice, value=price + Decimal("0.2"), step=market.step_no)
    below = arm(alice, condition="price_below", value=price - Decimal("0.2"), step=market.step_no)
    results = run(market, book, 400, start=2)
    fired = {f.alert["id"]: (r.step, f) for r in results for f in r.fires}
    assert set(fired) == {above.pk, below.pk}  # each once
    for alert, test in ((above, lambda p: p >= above.value), (below, lambda p: p <= below.value)):
        first = next(r for r in results for t in r.ticks if t.symbol == "AAA" and test(t.price))
        step, fire = fired[alert.pk]
        tick = next(t for t in first.ticks if t.symbol == "AAA")
        assert step == first.step and fire.alert["price"] == float(tick.price) and fire.user_id == alice.pk
        stored = Alert.objects.get(pk=alert.pk)
        assert (stored.state, stored.triggered_step, stored.triggered_price, stored.read) == (
            "triggered", first.step, tick.price, False
        )  # fmt: skip
        assert float(stored.triggered_change_pct) == tick.change_pct == fire.alert["change_pct"]
        # The frame's alert is the API's, moments included (read back as the database gives them: text, aware).
        assert fire.alert == alert_json.alert_json(stored)


@pytest.mark.parametrize(
    "condition, value, price, fires",
    [
        # 10.1 and 10.3 are the floats just below and just above their decimals: the gate must not decide on those.
        ("price_above", "10.3", "10.30", True), ("price_above", "10.3", "10.29", False),
        ("price_below", "10.1", "10.10", True), ("price_below", "10.1", "10.11", False),
        ("price_above", "10.1", "10.10", True), ("price_below", "10.3", "10.30", True),
        ("change_pct_above", "3", "10.30", True), ("change_pct_above", "3.01", "10.30", False),
        ("change_pct_below", "-1", "9.90", True), ("change_pct_below", "-1.01", "9.90", False),
    ],
)  # fmt: skip
def test_a_quote_at_the_alerts_value_exactly_fires_it(condition, value, price, fires):
    """The book's gate (the prices between which nothing fires) is exact at its edges: a quote equal to the value
    fires a price_above or price_below alert (and a change % equal to it a change % one), one a cent short does not."""
    book = alerts.AlertBook()
    book._place((1, "AAA", condition, Decimal(value), "armed", False))
    tick = Tick("AAA", Decimal(price), Decimal("10.00"), seq=2, ts=0)
    assert book.candidates([tick]) == ({1: tick} if fires else {})


def test_the_quotes_the_market_finds_past_their_gates_fire_what_a_look_at_every_quote_fires():
    """``Market.step(watch=book.watch)`` tests each new price where it is made and lists in ``crossed`` only
    those not inside their gate: the book finds in them, with the alerts read since (checked against the current
    quotes, as ``evaluate`` does), the same candidates as a book never watched finds in every changed quote,
    through sessions that open and close (new previous closes), a new reference price, a halt, alerts placed
    and removed after each step (where the market reads them), and a symbol listed while the books already hold
    an alert on it."""
    rng = random.Random(7)
    symbols = [f"S{i:02d}" for i in range(40)]
    ticks = {s: Tick(s, Decimal("100.00"), Decimal("100.00"), seq=0, ts=0) for s in symbols[:-1]}
    # Half the symbols move a few cents a step, half about a dollar; half the price alerts sit on a cent a few
    # cents away, where a price the market makes (before its rounding to cents) is often within half a cent.
    instruments = {s: Instrument(s, volatility=2.0 if i % 2 else 0.05, drift=0.0) for i, s in enumerate(symbols)}
    market = Market(ticks, dt=dt_years(0.25, 500), seed=3, schedule=Schedule(open_ms=4_000, closed_ms=1_000))
    watched, plain, pk, checked = alerts.AlertBook(), alerts.AlertBook(), 0, 0
    for step in range(400):
        if step == 200:
            market.add(Tick(symbols[-1], Decimal("99.00"), Decimal("99.00"), seq=0, ts=0))
        if step == 300:
            instruments["S02"] = replace(instruments["S02"], reference_price=Decimal("97.00"))
        halted = {s: replace(i, halted=step % 50 < 5 and s == "S01") for s, i in instruments.items()}
        live = {s: i for s, i in halted.items() if s in market.ticks}
        changed = market.step(live, ts=step * 250, watch=watched.watch)
        assert set(market.crossed) <= set(changed)
        fresh = set()
        for _ in range(rng.randrange(6)):  # alerts come and go, near the current prices
            pk += 1
            symbol, condition = rng.choice(symbols), rng.choice(alerts.CONDITIONS)
            price = market.ticks[symbol].price if symbol in market.ticks else Decimal("100")
            if "price" not in condition:
                value = rng.uniform(-3, 3)
            elif rng.random() < 0.5:
                value = price + rng.randrange(-3, 4) * Decimal("0.01")
            else:
                value = price * Decimal(str(rng.uniform(0.97, 1.03)))
            for book in (watched, plain):
                book._place((pk, symbol, condition, Decimal(str(round(value, 4))), "armed", False))
            fresh.add(pk)
        for gone in rng.sample(sorted(plain.where), min(len(plain.where), rng.randrange(3))):
            watched._remove(gone)
            plain._remove(gone)
            fresh.discard(gone)
        found = []
        for book, looked_at in ((watched, market.crossed), (plain, changed)):
            candidates = book.candidates(looked_at)
            candidates.update(book.new_candidates(fresh - candidates.keys(), market.ticks))
            found.append(candidates)
        assert found[0] == found[1]
        checked += len(found[1])
    assert checked > 400  # alerts did fire along the way: the comparison was not between two empty sets


def test_quotes_inside_their_gates_are_not_passed_on_before_or_after_a_listing():
    """The point of the gates: a quote far from every alert of its symbol is not handed to the book, also once a
    listing has moved every symbol's place in the market's order (the floats are rebuilt from the gates)."""
    symbols = [f"S{i:02d}" for i in range(30)]
    ticks = {s: Tick(s, Decimal("100.00"), Decimal("100.00"), seq=1, ts=0) for s in symbols}
    instruments = {s: Instrument(s, volatility=0.5, drift=0.0) for s in [*symbols, "AAA"]}
    market, book = Market(ticks, dt=dt_years(0.25, 500), seed=5), alerts.AlertBook()
    for pk, symbol in enumerate(symbols, start=1):
        book._place((pk, symbol, "price_above", Decimal("150"), "armed", False))
    live = {s: i for s, i in instruments.items() if s in market.ticks}
    first = market.step(live, ts=250, watch=book.watch)
    assert market.crossed == first and book.candidates(market.crossed) == {}  # gates not worked out yet
    second = market.step(live, ts=500, watch=book.watch)
    assert len(second) > 20 and market.crossed == []
    market.add(Tick("AAA", Decimal("10.00"), Decimal("10.00"), seq=0, ts=0))  # first in the order: every slot moves
    book._place((99, "AAA", "price_below", Decimal("1"), "armed", False))
    listed = market.step(instruments, ts=750, watch=book.watch)
    assert [t.symbol for t in market.crossed] == ["AAA"] and len(listed) > 20
    book.candidates(market.crossed)
    assert len(market.step(instruments, ts=1000, watch=book.watch)) > 20 and market.crossed == []


def test_not_at_the_arming_step_then_again_after_a_rearm(stocks, alice):
    market = volatile(stocks)
    book = alerts.AlertBook.load()
    run(market, book, 1)
    alert = arm(alice, step=market.step_no + 1)  # armed at the step about to be taken: not before the next
    first = run(market, book, 1, start=1)[0]
    assert first.fires == [] and Alert.objects.get(pk=alert.pk).state == "armed"
    (second,) = run(market, book, 1, start=2)
    assert [f.alert["id"] for f in second.fires] == [alert.pk]
    assert all(r.fires == [] for r in run(market, book, 10, start=3))  # never again
    Alert.objects.filter(pk=alert.pk).update(state="armed", armed_step=market.step_no)
    book.notice([alert.pk])  # what the rearm endpoint sends through the channel layer
    (again,) = run(market, book, 1, start=13)
    assert [f.alert["id"] for f in again.fires] == [alert.pk] and again.fires[0].alert["step"] == again.step


def test_a_rearm_whose_notice_was_lost_fires_once_the_market_reconciles(stocks, alice):
    """Nothing accepted is lost: a re-arm stored while Redis was away (its notice never reached the market) is
    found by the market's periodic read of every armed alert's id, and fires at the next step after it."""
    market = volatile(stocks)
    book = alerts.AlertBook.load()
    alert = arm(alice, step=market.step_no)
    (first,) = run(market, book, 1)
    assert [f.alert["id"] for f in first.fires] == [alert.pk]
    Alert.objects.filter(pk=alert.pk).update(state="armed", armed_step=market.step_no)  # re-armed; no notice
    assert all(r.fires == [] for r in run(market, book, 3, start=1))  # the book does not know yet
    book.reconcile(alert_rows.armed_ids())  # what the market's loop does every RECONCILE_EVERY_S
    (again,) = run(market, book, 1, start=4)
    assert [f.alert["id"] for f in again.fires] == [alert.pk]
    assert all(r.fires == [] for r in run(market, book, 3, start=5))  # once


def test_a_new_alert_already_satisfied_fires_at_the_next_step_even_if_its_symbol_does_not_move(stocks, alice):
    Stock.objects.update(halted=True)
    market = services.market_open(interval_ms=250, seed=1)
    book = alerts.AlertBook.load()
    run(market, book, 2)
    alert = arm(alice, step=market.step_no)
    (result,) = run(market, book, 1, start=2)
    assert result.ticks == [] and [f.alert["id"] for f in result.fires] == [alert.pk]


def test_alerts_read_ahead_of_a_step_fire_at_it_and_its_fires_leave_the_book_before_the_next(stocks, alice):
    """run_market reads new alerts between steps (``AlertBook.prepare``, before the step's ts): one read ahead
    fires at the next step as one read in the step does, even if its symbol does not move; the fired alerts
    stay in the book until the next read (after the step's publishing), then leave it, and fire nothing more."""
    Stock.objects.update(halted=True)
    market = services.market_open(interval_ms=250, seed=1)
    book = alerts.AlertBook.load()
    run(market, book, 2)
    first, second = arm(alice, step=market.step_no), arm(alice, value="0.02", step=market.step_no)
    book.prepare()
    assert book.fresh == {first.pk, second.pk} and len(book) == 2
    (result,) = run(market, book, 1, start=2)
    assert sorted(f.alert["id"] for f in result.fires) == [first.pk, second.pk]
    assert len(book) == 2 and not book.fresh, "forgotten only at the next read"
    book.prepare()
    assert len(book) == 0 and "AAA" not in book.lists
    assert run(market, book, 3, start=3)[-1].fires == []


def test_a_read_ahead_that_fails_loses_no_notice(stocks, alice, monkeypatch):
    """A database blip in ``prepare`` (run_market logs it and steps on, the book kept): a re-arm noticed before it
    is read at the next read all the same, and the alert fires at the next step, not at the next reconcile."""
    Stock.objects.update(halted=True)
    market = services.market_open(interval_ms=250, seed=1)
    book = alerts.AlertBook.load()
    run(market, book, 2)
    alert = arm(alice, step=market.step_no)
    book.prepare()
    assert [f.id for f in run(market, book, 1, start=2)[0].fires] == [alert.pk]
    book.prepare()
    Alert.objects.filter(pk=alert.pk).update(state="armed", armed_step=market.step_no)  # the API's re-arm ...
    book.notice([alert.pk])  # ... and its notice
    real = alert_rows.after

    def blip(watermark):
        raise OSError("the database went away for a moment")

    monkeypatch.setattr(alert_rows, "after", blip)
    with pytest.raises(OSError):
        book.prepare()
    monkeypatch.setattr(alert_rows, "after", real)
    book.prepare()
    assert alert.pk in book.where
    assert [f.id for f in run(market, book, 1, start=3)[0].fires] == [alert.pk]


def test_disabled_deleted_and_unsatisfied_alerts_never_fire(stocks, alice):
    market = volatile(stocks)
    disabled = arm(alice, disabled=True)
    deleted = arm(alice, symbol="BBB")
    arm(alice, value="1000000")
    arm(alice, condition="change_pct_above", value="5000")
    book = alerts.AlertBook.load()
    Alert.objects.filter(pk=deleted.pk).delete()
    late = arm(alice, symbol="CCC")
    Alert.objects.filter(pk=late.pk).update(disabled=True)
    assert all(r.fires == [] for r in run(market, book, 50))
    assert not Alert.objects.filter(state="triggered").exists() and Alert.objects.get(pk=disabled.pk).state == "armed"
    assert len(book) == 2  # the disabled and deleted ones left the book when found out


def test_a_thousand_alerts_crossing_in_one_step_fire_a_thousand_times(stocks, alice):
    market = volatile(stocks)
    aaa = Stock.objects.get(symbol="AAA")
    conditions = ("price_above", "price_below", "change_pct_above", "change_pct_below")
    values = {"price_above": "0.01", "price_below": "99999", "change_pct_above": "-999", "change_pct_below": "999"}
    Alert.objects.bulk_create(
        Alert(user=alice, stock=aaa, condition=conditions[i % 4], value=values[conditions[i % 4]]) for i in range(1000)
    )
    book = alerts.AlertBook.load()
    (result,) = run(market, book, 1)
    assert len(result.fires) == 1000 and len({f.alert["id"] for f in result.fires}) == 1000
    assert Alert.objects.filter(state="triggered", triggered_step=result.step).count() == 1000
    assert all(r.fires == [] for r in run(market, book, 5, start=1)) and len(book) == 0


def test_a_step_whose_lease_renewal_fails_fires_nothing(stocks, alice):
    market = volatile(stocks)
    mine, _ = leases.acquire(holder="old", now_ms=1_000)
    leases.acquire(holder="new", now_ms=10**15)  # the lease expired and another market took it
    alert = arm(alice)
    book = alerts.AlertBook.load()
    with pytest.raises(leases.LeaseLost):
        services.market_step(market=market, ts=250, lease=mine, alerts=book)
    assert Alert.objects.get(pk=alert.pk).state == "armed"
    assert len(book) == 1  # nothing forgotten either


def test_a_step_that_does_not_commit_leaves_no_gate_worked_out_in_it(stocks, alice, monkeypatch):
    """A step that fails after its alerts were looked at (here in its stock writes) rolls the market back, and
    with it maybe a new previous close that gates were worked out with: the book forgets every gate, so the next
    step passes every quote of a symbol with alerts to the book again, which works them out anew."""
    market = volatile(stocks)
    arm(alice, value="100000")  # far above: never fires, but AAA has a gate
    arm(alice, symbol="BBB", condition="price_below", value="0.01")
    book = alerts.AlertBook.load()
    run(market, book, 3)
    assert set(book.gates) == {"AAA", "BBB"} and market.crossed == []  # both quotes inside their gates

    def fails(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "_store_live_columns", fails)
    with pytest.raises(RuntimeError):
        services.market_step(market=market, ts=3 * 250, alerts=book)
    assert book.gates == {}
    monkeypatch.undo()
    (after,) = run(market, book, 1, start=3)
    assert {t.symbol for t in market.crossed} == {t.symbol for t in after.ticks} & {"AAA", "BBB"}
    assert market.crossed and set(book.gates) == {t.symbol for t in market.crossed}, "worked out again"


def test_the_steps_batch_carries_every_fire_once(stocks, alice, bob, clean_redis):
    """The fires ride in the step's batch (each web process writes a user's alert with that connection's quotes
    frame); with the batch sent, no separate personal message goes out."""
    market = volatile(stocks)
    for i in range(30):
        arm(alice if i % 2 else bob, symbol=("AAA", "BBB", "CCC")[i % 3])
    book = alerts.AlertBook.load()
    (result,) = run(market, book, 1)
    assert len(result.fires) == 30
    layer = get_channel_layer()

    async def publish_and_receive():
        quotes, mine = await layer.new_channel(), await layer.new_channel()
        await layer.group_add(protocol.QUOTES_GROUP, quotes)
        await layer.group_add(personal.PERSONAL_GROUP, mine)
        assert await Publisher(layer).publish(result)
        batch = await layer.receive(quotes)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):  # nothing more comes: a separate message would be in Redis by now
                await layer.receive(mine)
        return batch

    batch = async_to_sync(publish_and_receive)()
    assert batch["type"] == protocol.BATCH_EVENT
    events = [personal.decoded(event) for event in batch["events"]]
    assert sorted(frame["alert"]["id"] for _, frame in events) == sorted(Alert.objects.values_list("id", flat=True))
    for user, frame in events:
        stored = Alert.objects.select_related("stock").get(pk=frame["alert"]["id"])
        assert user == stored.user_id
        step_ts = round(stored.triggered_at.timestamp() * 1000)
        assert frame == personal.alert_frame(alert_json.alert_json(stored), step_ts)


def test_fires_whose_batch_could_not_be_sent_go_in_a_personal_message_of_their_own(stocks, alice, clean_redis):
    market = volatile(stocks)
    arm(alice, symbol="AAA")
    (result,) = run(market, alerts.AlertBook.load(), 1)
    sent = []

    class BatchesFail:
        async def group_send(self, group, message):
            if group == protocol.QUOTES_GROUP:
                raise ConnectionError("Redis is away")
            sent.append((group, message))

    assert not async_to_sync(Publisher(BatchesFail()).publish)(result)
    ((group, message),) = sent
    assert group == personal.PERSONAL_GROUP and message["type"] == personal.PERSONAL_EVENT
    assert [personal.decoded(e)[1]["alert"]["id"] for e in message["events"]] == [result.fires[0].alert["id"]]


# -- the admin -----------------------------------------------------------------------------------------------------


def test_the_admin_lists_searches_filters_and_disables_a_users_alerts(
    stocks, alice, bob, clean_redis, django_capture_on_commit_callbacks
):
    operator = User.objects.create_superuser("op", "op@example.com", "x-unused-9271")
    client = Client()
    client.force_login(operator)
    mine = [arm(alice, value="1"), arm(alice, symbol="BBB", value="2")]
    theirs = arm(bob, symbol="CCC", value="3", state="triggered")
    page = client.get("/admin/ticker/alert/").content.decode()
    assert "alice" in page and "bob" in page and "BBB" in page
    assert "bob" not in client.get("/admin/ticker/alert/?q=alice").content.decode()
    assert "alice" not in client.get("/admin/ticker/alert/?q=CCC").content.decode()
    assert "alice" not in client.get("/admin/ticker/alert/?state__exact=triggered").content.decode()
    action = {"action": "disable_users_alerts", "_selected_action": [mine[0].pk]}
    assert client.post("/admin/ticker/alert/", action).status_code == 302
    assert set(Alert.objects.filter(disabled=True).values_list("id", flat=True)) == {a.pk for a in mine}
    assert not Alert.objects.get(pk=theirs.pk).disabled
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(alerts.CHANGED_GROUP, channel)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/ticker/alert/", {"action": "enable_users_alerts", "_selected_action": [mine[1].pk]})
    assert not Alert.objects.filter(disabled=True).exists()
    notice = async_to_sync(layer.receive)(channel)  # the market hears of it, to put them back in its book
    assert notice["type"] == alerts.CHANGED_EVENT and sorted(notice["ids"]) == sorted(a.pk for a in mine)
    form = client.get(f"/admin/ticker/alert/{theirs.pk}/change/").content.decode()
    assert 'name="disabled"' in form and 'name="value"' not in form  # the figures are read-only
    assert client.get("/admin/ticker/alert/add/").status_code == 403


# -- seed_alerts ---------------------------------------------------------------------------------------------------


def test_seed_alerts_makes_simulated_users_and_alerts_near_prices_and_tops_up(stocks):
    from django.core.management import call_command

    call_command("seed_alerts", "--users", "3", "--alerts", "40", stdout=open("/dev/null", "w"))  # noqa: SIM115
    users = list(User.objects.order_by("username"))
    assert [u.username for u in users] == ["sim-user-00001", "sim-user-00002", "sim-user-00003"]
    assert not any(u.has_usable_password() for u in users)
    assert Alert.objects.filter(state="armed").count() == 40
    assert set(Alert.objects.values_list("condition", flat=True)) == set(alerts.CONDITIONS)
    for alert in Alert.objects.select_related("stock").filter(condition__startswith="price_"):
        assert abs(alert.value - alert.stock.price) <= alert.stock.price * Decimal("0.05") + Decimal("0.01")
    Alert.objects.filter(pk__in=list(Alert.objects.values_list("pk", flat=True)[:5])).update(state="triggered")
    call_command("seed_alerts", "--users", "3", "--alerts", "40", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert Alert.objects.filter(state="armed").count() == 40 and User.objects.count() == 3
    assert list(alerts.CONDITIONS) == Alert.Condition.values  # the book's order is the model's


def test_new_alerts_are_read_in_batches_whatever_their_number(stocks, alice):
    from ticker.market import alert_rows

    aaa = Stock.objects.get(symbol="AAA")
    Alert.objects.bulk_create(
        Alert(user=alice, stock=aaa, condition="price_above", value=1000 + n) for n in range(2500)
    )
    first = Alert.objects.order_by("id").values_list("id", flat=True).first()
    rows = alert_rows.after(first - 1)
    assert [row[0] for row in rows] == list(Alert.objects.order_by("id").values_list("id", flat=True))
    assert rows[0][1] == "AAA" and float(rows[-1][3]) == 3499.0


def test_a_jump_in_ids_is_not_looked_for_id_by_id_and_the_ids_just_below_the_top_are(stocks, alice):
    """PostgreSQL hands out ids before their transactions commit: the book looks a while for the ids it skipped,
    but only the ``GAP_MAX`` just below the highest it read. An id far above the rest (an explicit one, a
    ``setval``) would otherwise make it look for a million ids at every step. One committed late just below the
    top is still found at the next step."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite hands out ids as it commits: there are no gaps to look for")
    aaa = Stock.objects.get(symbol="AAA")
    book = alerts.AlertBook.load()
    top = book.watermark + 1_000_000
    Alert.objects.create(id=top, user=alice, stock=aaa, condition="price_above", value=500)
    assert book.sync() == {top}
    assert len(book.gaps) == alerts.GAP_MAX and min(book.gaps) == top - alerts.GAP_MAX
    late = Alert.objects.create(id=top - 3, user=alice, stock=aaa, condition="price_above", value=501)
    assert book.sync() == {late.pk} and late.pk not in book.gaps and len(book) == 2


def test_fires_that_could_not_be_sent_at_all_are_logged_and_counted_and_stay_stored(stocks, alice, caplog):
    from ticker.ops import metrics

    market = volatile(stocks)
    arm(alice)
    (result,) = run(market, alerts.AlertBook.load(), 1)
    tried = []

    class LayerDown:
        async def group_send(self, group, message):
            tried.append(group)
            raise ConnectionError("Redis refused it")

    before = metrics.market.alert_delivery_failures
    logger = logging.getLogger("ticker.market.loop")  # the site's logging config does not propagate to the root
    logger.addHandler(caplog.handler)
    try:
        assert async_to_sync(Publisher(LayerDown()).publish)(result) is False
    finally:
        logger.removeHandler(caplog.handler)
    assert tried == [protocol.QUOTES_GROUP, personal.PERSONAL_GROUP]
    assert metrics.market.alert_delivery_failures == before + 1
    assert "could not deliver the 1 alert fires" in caplog.text and "they are stored" in caplog.text
    assert Alert.objects.get().state == "triggered"


def _as_stored(moment: datetime, form: str):
    """A moment as a raw cursor gives it: aware (a model), SQLite's text, or PostgreSQL's ``AT TIME ZONE 'UTC'``
    text (its fraction without trailing zeros)."""
    if form == "aware":
        return moment
    if form == "sqlite":
        return str(moment.replace(tzinfo=None))
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return moment.strftime("%Y-%m-%d %H:%M:%S") + fraction


_fire = st.fixed_dictionaries(
    {
        "pk": st.integers(1, 2**62),
        "condition": st.sampled_from(alerts.CONDITIONS),
        "value": st.decimals(min_value=Decimal("-999999.9999"), max_value=Decimal("999999.9999"), places=4),
        "note": st.text(max_size=40),
        "created_at": st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.just(UTC)),  # noqa: DTZ001 (bounds are naive)
        "form": st.sampled_from(("aware", "sqlite", "postgresql")),
        "quote": st.integers(0, 1),
    }
)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    fires=st.lists(_fire, min_size=1, max_size=4),
    symbols=st.lists(st.from_regex(r"[A-Z.]{1,10}", fullmatch=True), min_size=2, max_size=2),
    price=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999999.99"), places=2),
    change_pct=st.decimals(min_value=Decimal("-100"), max_value=Decimal("99999.99"), places=2),
    step=st.integers(1, 2**40),
    ts=st.none() | st.integers(0, 2**45),
)
def test_a_fires_frame_text_is_byte_for_byte_the_encoded_frame(fires, symbols, price, change_pct, step, ts):
    """The market writes each fire's frame as text directly (``alert_json.fired_frames``): the same bytes as the
    frame built as a dict from the model's values and encoded, whatever the note holds (quotes, backslashes, any
    Unicode), however the database gave the moment (aware, SQLite's text, PostgreSQL's), and with several fires of
    a step sharing their quotes and what the step writes once (a value, a note, a moment)."""
    triggered_at = alert_json.iso(datetime(2026, 12, 7, 17, 0, tzinfo=UTC))
    quoted, make = alert_json.fired_frames(step=step, ts=ts, triggered_at=triggered_at)
    quotes = [quoted(symbol, price, change_pct) for symbol in symbols]
    for fire in fires:
        fields = {
            "symbol": symbols[fire["quote"]], "condition": fire["condition"], "value": fire["value"],
            "note": fire["note"], "created_at": fire["created_at"], "triggered_at": triggered_at, "price": price,
            "change_pct": change_pct, "step": step,
        }  # fmt: skip
        expected = protocol.encode(personal.alert_frame(alert_json.fired_json(fire["pk"], fields), ts))
        stored = _as_stored(fire["created_at"], fire["form"])
        made = make(fire["pk"], fire["condition"], fire["value"], fire["note"], stored, quotes[fire["quote"]])
        assert made == expected


def test_the_alert_table_keeps_no_index_a_fire_need_not_write(db):
    """A fire that cannot update its row in place writes every index of the table again: no ``state`` index (the
    fires' column), and no index of the user alone (``alert_by_user_newest`` begins with it)."""
    from django.db import connection

    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Alert._meta.db_table)
    indexed = sorted(tuple(c["columns"]) for c in constraints.values() if c["index"] or c["primary_key"])
    assert indexed == [("id",), ("stock_id",), ("user_id", "created_at")], indexed
