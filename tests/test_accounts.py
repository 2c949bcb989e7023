"""Accounts and the watchlist on the account (issue 23): sign-up, sign-in with django-axes' lockout, sign-out by
POST only, password change, and ``/api/watchlist/`` with every bad input refused by name and nothing stored.
In process (Django's test client); the publish test uses the suite's real Redis channel layer."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from ticker.models import WATCHLIST_MOST_SYMBOLS, SignUpFailures, Stock, Watchlist
from ticker.wire import personal

from .conftest import make_stocks

PASSWORD = "a-long-password-for-tests-7q"
User = get_user_model()


@pytest.fixture(autouse=True)
def quick_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def market(db):
    """Three listed symbols and one delisted (inactive)."""
    stocks = make_stocks(("AAA", "100.00"), ("BBB", "50.00"), ("CCC", "20.00"), ("OLD", "5.00"))
    Stock.objects.filter(symbol="OLD").update(active=False)
    return stocks


@pytest.fixture
def alice(db):
    return User.objects.create_user("alice", password=PASSWORD)


def signed_in(user) -> Client:
    """A browser-like client (CSRF enforced) signed in as ``user``, holding its csrftoken cookie."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/accounts/password_change/").status_code == 200  # a page with a form sets csrftoken
    return client


def put(client: Client, body, *, csrf: bool = True):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    headers = {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value} if csrf else {}
    return client.put("/api/watchlist/", data, content_type="application/json", **headers)


def stored(user) -> list[str] | None:
    return Watchlist.objects.filter(user=user).values_list("symbols", flat=True).first()


# --- sign-up ----------------------------------------------------------------------------------------------


def sign_up(client: Client, username: str, password: str = PASSWORD, address: str = "127.0.0.1"):
    form = {"username": username, "password1": password, "password2": password}
    return client.post("/accounts/signup/", form, REMOTE_ADDR=address)


def test_sign_up_creates_the_account_and_signs_in(db):
    client = Client()
    page = client.get("/accounts/signup/")
    assert page.status_code == 200 and b'id="signup-form"' in page.content and b"ticker" in page.content
    answer = sign_up(client, "bob")
    assert answer.status_code == 302 and answer["Location"] == "/"
    assert User.objects.filter(username="bob").exists()
    assert b'data-user="bob"' in client.get("/accounts/password_change/").content
    assert client.get("/accounts/signup/")["Location"] == "/"  # signed in, the form is not offered again


def test_sign_up_refuses_a_username_taken_in_another_case(alice):
    answer = sign_up(Client(), "Alice")
    assert answer.status_code == 200
    assert "The username “Alice” is taken: usernames are the same whatever their case" in answer.content.decode()
    assert list(User.objects.values_list("username", flat=True)) == ["alice"]


def test_the_database_refuses_a_username_in_another_case_too(alice):
    """Two sign-ups racing past the form's check: migration 0007's index refuses the second."""
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user("ALICE", password=PASSWORD)


def test_sign_up_applies_the_password_validators(db):
    answer = sign_up(Client(), "carol", password="password")
    assert answer.status_code == 200
    assert "This password is too common." in answer.content.decode()
    assert not User.objects.filter(username="carol").exists()


def test_too_many_failed_sign_ups_from_one_address_are_refused(db, settings):
    settings.TICKER_SIGNUP_FAILURE_LIMIT = 3
    client = Client()
    assert sign_up(client, "dave", password="x", address="203.0.113.5").status_code == 200
    assert sign_up(client, "dave", password="x", address="203.0.113.5").status_code == 200
    locked = sign_up(client, "dave", password="x", address="203.0.113.5")
    assert locked.status_code == 429 and "Too many attempts" in locked.content.decode()
    # Locked even with a good form, from that address only.
    assert sign_up(client, "dave", address="203.0.113.5").status_code == 429
    assert not User.objects.filter(username="dave").exists()
    assert sign_up(Client(), "dave", address="203.0.113.6").status_code == 302


def test_failed_sign_ups_are_counted_in_the_database_for_every_web_process(db, settings):
    """The count is not one process's: stored (what another web process reads), not in this one's cache, and
    an address whose cool-off has passed starts again from one, its row gone once another failure is counted."""
    settings.TICKER_SIGNUP_FAILURE_LIMIT = 2
    for _ in range(2):
        sign_up(Client(), "erin", password="x", address="203.0.113.9")
    cache.clear()
    assert sign_up(Client(), "erin", address="203.0.113.9").status_code == 429
    assert SignUpFailures.objects.get(address="203.0.113.9").failures == 2
    SignUpFailures.objects.update(last_at=timezone.now() - timedelta(minutes=settings.TICKER_LOGIN_COOLOFF_MINUTES))
    assert sign_up(Client(), "erin", password="x", address="203.0.113.9").status_code == 200  # cooled off
    assert SignUpFailures.objects.get(address="203.0.113.9").failures == 1
    sign_up(Client(), "erin", password="x", address="203.0.113.10")
    SignUpFailures.objects.filter(address="203.0.113.9").update(last_at=timezone.now() - timedelta(days=1))
    sign_up(Client(), "erin", password="x", address="203.0.113.11")
    assert set(SignUpFailures.objects.values_list("address", flat=True)) == {"203.0.113.10", "203.0.113.11"}


# --- sign-in, sign-out, password change ------------------------------------------------------------------


def log_in(client: Client, username: str, password: str, address: str = "127.0.0.1"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_sign_in_and_out(alice):
    client = Client()
    assert client.get("/accounts/login/").status_code == 200
    answer = log_in(client, "alice", PASSWORD)
    assert answer.status_code == 302 and answer["Location"] == "/"
    assert b'data-user="alice"' in client.get("/accounts/login/?next=/lab/", follow=True).content
    # Sign-out is POST only: a link (GET) signs nobody out.
    assert client.get("/accounts/logout/").status_code == 405
    assert client.get("/api/watchlist/").status_code == 200
    out = client.post("/accounts/logout/")
    assert out.status_code == 302 and out["Location"] == "/"
    assert client.get("/api/watchlist/").status_code == 401


def test_repeated_failed_sign_ins_lock_the_account_at_that_address(alice, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(Client(), "alice", "wrong", "203.0.113.7").status_code == 200
    locked = log_in(Client(), "alice", "wrong", "203.0.113.7")
    assert locked.status_code == 429
    assert "Too many attempts: sign-in locked" in locked.content.decode()
    right = log_in(Client(), "alice", PASSWORD, "203.0.113.7")
    assert right.status_code == 429 and "sessionid" not in right.cookies
    # Another address still signs in.
    assert log_in(Client(), "alice", PASSWORD, "203.0.113.8").status_code == 302


def test_password_change(alice):
    client = Client()
    client.force_login(alice)
    new = "another-long-password-for-tests-3k"
    answer = client.post(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert answer.status_code == 302 and answer["Location"] == "/accounts/password_change/done/"
    assert client.get(answer["Location"]).status_code == 200
    alice.refresh_from_db()
    assert alice.check_password(new)


def test_password_change_needs_a_sign_in(db):
    answer = Client().get("/accounts/password_change/")
    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/?next=")


def test_the_header_offers_sign_in_and_sign_up_to_anonymous_visitors(db):
    page = Client().get("/accounts/login/").content.decode()
    assert 'data-user=""' in page and 'href="/accounts/signup/"' in page


# --- the watchlist API --------------------------------------------------------------------------------------


def test_anonymous_gets_a_json_401(market):
    for answer in (Client().get("/api/watchlist/"), Client().put("/api/watchlist/", "{}")):
        assert answer.status_code == 401 and answer["Content-Type"] == "application/json"
        assert answer.json()["code"] == "not_signed_in"


def test_a_new_account_has_an_empty_watchlist(market, alice):
    assert signed_in(alice).get("/api/watchlist/").json() == {"symbols": []}


def test_put_stores_the_list_in_its_order_and_get_reads_it(market, alice):
    client = signed_in(alice)
    answer = put(client, {"symbols": ["CCC", "aaa"]})
    assert answer.status_code == 200 and answer.json() == {"symbols": ["CCC", "AAA"]}
    assert client.get("/api/watchlist/").json() == {"symbols": ["CCC", "AAA"]}
    assert put(client, {"symbols": []}).json() == {"symbols": []}
    assert stored(alice) == []


def test_another_user_never_sees_the_watchlist(market, alice):
    put(signed_in(alice), {"symbols": ["AAA"]})
    bob = User.objects.create_user("bob", password=PASSWORD)
    assert signed_in(bob).get("/api/watchlist/").json() == {"symbols": []}


BAD_BODIES = [
    pytest.param({"symbols": ["AAA", "ZZZZ"]}, 400, "unknown_symbol", {"symbols": ["ZZZZ"]}, id="unknown"),
    pytest.param(
        {"symbols": ["OLD", "AAA"]}, 400, "unknown_symbol", {"symbols": ["OLD"], "delisted": ["OLD"]}, id="delisted"
    ),
    pytest.param({"symbols": ["AAA", "bad symbol\x00"]}, 400, "unknown_symbol", {}, id="not-a-symbol"),
    pytest.param({"symbols": ["AAA", "BBB", "aaa"]}, 400, "duplicate_symbols", {"symbols": ["AAA"]}, id="duplicates"),
    pytest.param({"symbols": ["AAA"] * (WATCHLIST_MOST_SYMBOLS + 1)}, 400, "too_many_symbols", {}, id="too-many"),
    pytest.param("not json", 400, "bad_json", {}, id="not-json"),
    pytest.param(b"\xff\xfe", 400, "bad_json", {}, id="not-utf8"),
    pytest.param(["AAA"], 400, "bad_watchlist", {}, id="a-list"),
    pytest.param({"symbols": "AAA"}, 400, "bad_watchlist", {}, id="a-string"),
    pytest.param({"symbols": ["AAA", 7]}, 400, "bad_watchlist", {}, id="a-number"),
    pytest.param({"symbols": ["AAA"], "extra": 1}, 400, "bad_watchlist", {}, id="extra-key"),
    pytest.param({}, 400, "bad_watchlist", {}, id="empty-object"),
    pytest.param("x" * 20_000, 413, "bad_watchlist", {}, id="too-big"),
]


@pytest.mark.parametrize(("body", "status", "code", "named"), BAD_BODIES)
def test_every_bad_put_is_a_json_error_naming_it_and_nothing_is_stored(market, alice, body, status, code, named):
    client = signed_in(alice)
    put(client, {"symbols": ["BBB"]})
    answer = put(client, body)
    assert answer.status_code == status and answer["Content-Type"] == "application/json"
    error = answer.json()
    assert error["type"] == "error" and error["code"] == code and error["message"]
    for key, value in named.items():
        assert error[key] == value
    for symbol in named.get("symbols", []):
        assert symbol in error["message"]
    assert stored(alice) == ["BBB"]


def test_too_many_says_the_most(market, alice):
    error = put(signed_in(alice), {"symbols": ["AAA"] * 60}).json()
    assert error["most"] == WATCHLIST_MOST_SYMBOLS and str(WATCHLIST_MOST_SYMBOLS) in error["message"]


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token-wrong-tok"])
def test_a_put_without_the_csrf_token_is_a_json_403_and_stores_nothing(market, alice, token):
    client = signed_in(alice)
    headers = {"HTTP_X_CSRFTOKEN": token} if token else {}
    answer = client.put("/api/watchlist/", json.dumps({"symbols": ["AAA"]}), content_type="application/json", **headers)
    assert answer.status_code == 403 and answer["Content-Type"] == "application/json"
    error = answer.json()
    assert error["code"] == "csrf_failed" and "X-CSRFToken" in error["message"]
    assert stored(alice) is None


def test_other_methods_are_a_json_405(market, alice):
    answer = signed_in(alice).post("/api/watchlist/", "{}", content_type="application/json")
    assert answer.status_code == 405 and answer.json()["code"] == "method_not_allowed"
    assert answer["Allow"] == "GET, HEAD, PUT"


def test_a_put_publishes_one_watchlist_frame_to_the_personal_group(market, alice):
    """On the suite's real Redis channel layer: a channel in PERSONAL_GROUP receives the user's new list."""
    client = signed_in(alice)
    layer = get_channel_layer()

    async def scenario():
        channel = await layer.new_channel()
        await layer.group_add(personal.PERSONAL_GROUP, channel)
        try:
            answer = await sync_to_async(put)(client, {"symbols": ["BBB", "AAA"]})
            assert answer.status_code == 200
            message = await asyncio.wait_for(layer.receive(channel), timeout=5)
            bad = await sync_to_async(put)(client, {"symbols": ["ZZZZ"]})
            assert bad.status_code == 400
            with pytest.raises(TimeoutError):  # a refused PUT publishes nothing
                await asyncio.wait_for(layer.receive(channel), timeout=0.5)
            return message
        finally:
            await layer.group_discard(personal.PERSONAL_GROUP, channel)

    message = async_to_sync(scenario)()
    assert message == personal.message([(alice.id, personal.watchlist_frame(["BBB", "AAA"]))])


def test_a_failed_publish_keeps_the_stored_change_and_answers_200(market, alice, monkeypatch, caplog):
    class Broken:
        async def group_send(self, group, message):
            raise ConnectionError("Redis is away")

    monkeypatch.setattr(logging.getLogger("ticker"), "propagate", True)  # settings keep ticker's logs to itself
    monkeypatch.setattr("ticker.accounts.api.get_channel_layer", Broken)
    answer = put(signed_in(alice), {"symbols": ["AAA"]})
    assert answer.status_code == 200 and answer.json() == {"symbols": ["AAA"]}
    assert stored(alice) == ["AAA"]
    assert "could not be published" in caplog.text
