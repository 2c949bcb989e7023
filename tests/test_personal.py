"""Personal frames (issue 23): sockets that know their user, and each user's frames routed to them only.

In process, through the real ASGI application (config.asgi.application: AuthMiddlewareStack reads the session
cookie) and the real Redis channel layer: a message sent with ``group_send(PERSONAL_GROUP, ...)`` as the market
and the web processes send it reaches the named user's sockets and SSE streams, and nobody else's.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import ApplicationCommunicator, WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from config.asgi import application
from ticker.hub.personal import PersonalRouter
from ticker.wire import personal
from ticker.wire.frames import Frame

from .clients import recv_data

HOST = (b"host", b"127.0.0.1")
ORIGIN = (b"origin", b"http://127.0.0.1")
ALERT = {"id": 7, "symbol": "AAA", "condition": "price_above", "value": "101.00", "note": "sell half"}


# -- the router alone ------------------------------------------------------


class FakeOutlet:
    deflate = False

    def __init__(self, backlogged: bool = False):
        self.backlogged = backlogged
        self.frames: list[Frame] = []

    def write(self, frame: Frame) -> None:
        self.frames.append(frame)


class WritesOutlet(FakeOutlet):
    """Also records each call: one ``write_all`` is one socket write on daphne."""

    def __init__(self):
        super().__init__()
        self.calls: list[list[str]] = []

    def write(self, frame: Frame) -> None:
        super().write(frame)
        self.calls.append([json.loads(frame.text)["type"]])

    def write_all(self, frames: list[Frame]) -> None:
        self.frames += frames
        self.calls.append([json.loads(f.text)["type"] for f in frames])


def kinds(outlet: FakeOutlet) -> list[str]:
    return [json.loads(f.text)["type"] for f in outlet.frames]


def test_router_writes_to_each_connection_of_the_user_and_drops_the_rest():
    router = PersonalRouter(step=lambda: 12)
    a1, a2, b, anonymous = FakeOutlet(), FakeOutlet(), FakeOutlet(), FakeOutlet()
    router.attach(a1, 1)
    router.attach(a2, 1)
    router.attach(b, 2)
    router.attach(anonymous, None)
    router.route(personal.message([(1, personal.alert_frame(ALERT)), (3, personal.alert_frame(ALERT))]))
    assert kinds(a1) == kinds(a2) == ["alert"] and not b.frames and not anonymous.frames
    assert a1.frames[0] is a2.frames[0], "encoded once for every connection of the user"
    assert a1.frames[0].step == 12 and a1.frames[0].kind == "alert"
    assert router.not_here == 1, "an event for a user with no connection here is dropped"
    assert router.sent.frames["alert"] == 2 and router.sent.bytes["alert"] == 2 * len(a1.frames[0].payload)
    router.detach(a2)
    router.route(personal.message([(1, personal.watchlist_frame(["AAA"]))]))
    assert kinds(a1) == ["alert", "watchlist"] and kinds(a2) == ["alert"]


def test_a_steps_fires_ride_in_its_batch_and_go_out_in_the_same_write_as_the_users_quotes():
    """Each alert goes out in one write with its connection's quotes frame of the step, after it; a connection
    that gets no quotes frame this step (nothing it follows moved) gets its alert alone; nobody else gets one."""
    from ticker.hub import EVERYTHING, QuoteHub
    from ticker.hub.clock import ManualClock
    from ticker.hub.interest import Interest

    def quote(symbol, seq):
        return {"symbol": symbol, "price": 1.0, "change": 0.0, "change_pct": 0.0, "seq": seq, "ts": 1}

    hub = QuoteHub(None, clock=ManualClock())
    hub.store.apply(1, [quote("AAA", 1), quote("BBB", 1)])
    on_aaa, on_bbb, anonymous, elsewhere = WritesOutlet(), WritesOutlet(), WritesOutlet(), WritesOutlet()
    hub.fanout.attach(on_aaa, EVERYTHING)
    hub.fanout.attach(on_bbb, Interest(False, frozenset({"BBB"})))
    hub.fanout.attach(anonymous, EVERYTHING)
    hub.personal.attach(on_aaa, 1)
    hub.personal.attach(on_bbb, 2)
    fires = [(1, personal.alert_frame(ALERT, 5)), (2, personal.alert_frame(ALERT, 5)), (3, personal.alert_frame(ALERT))]
    hub.on_batch({"step": 2, "quotes": [quote("AAA", 2)], "events": personal.events_of(fires)})
    assert on_aaa.calls == [["quotes", "alert"]], "one write: the step's quotes, then the alert"
    assert on_bbb.calls == [["alert"]], "BBB did not move: the alert alone"
    assert anonymous.calls == [["quotes"]] and not elsewhere.calls
    assert json.loads(on_aaa.frames[1].text) == {"type": "alert", "ts": 5, "alert": ALERT}
    assert not on_aaa.frames[1].compress, "a frame for one user is never compressed per connection"
    assert not hub.fanout.riders
    assert hub.personal.delivered == 2 and hub.personal.not_here == 1


def test_router_skips_a_backlogged_connection():
    router = PersonalRouter()
    reading, stuck = FakeOutlet(), FakeOutlet(backlogged=True)
    router.attach(reading, 1)
    router.attach(stuck, 1)
    router.route(personal.message([(1, personal.alert_frame(ALERT))]))
    assert kinds(reading) == ["alert"] and stuck.frames == [] and router.dropped_backlogged == 1


def test_router_forgets_a_user_after_signed_out():
    router = PersonalRouter()
    a, b = FakeOutlet(), FakeOutlet()
    router.attach(a, 1)
    router.attach(b, 2)
    router.route(personal.message([(1, personal.signed_out_frame())]))
    router.route(personal.message([(1, personal.alert_frame(ALERT)), (2, personal.alert_frame(ALERT))]))
    assert kinds(a) == ["signed_out"] and kinds(b) == ["alert"]
    assert router.owner(a) is None and router.owner(b) == 2 and len(router) == 1


def test_a_sign_out_sparing_a_session_leaves_that_sessions_connections_routed():
    """After a password change (``signed_out_message(..., sparing=)``): the user's other sessions' connections get
    ``signed_out`` and are forgotten, the changing session's connections get nothing and stay routed."""
    router = PersonalRouter()
    kept, other, untagged, bob = FakeOutlet(), FakeOutlet(), FakeOutlet(), FakeOutlet()
    router.attach(kept, 1, "tag-of-this-session")
    router.attach(other, 1, "tag-of-another-session")
    router.attach(untagged, 1)
    router.attach(bob, 2, "tag-of-this-session")
    router.route(personal.signed_out_message(1, sparing="tag-of-this-session"))
    router.route(personal.message([(1, personal.alert_frame(ALERT)), (2, personal.alert_frame(ALERT))]))
    assert kinds(kept) == ["alert"] and kinds(other) == kinds(untagged) == ["signed_out"] and kinds(bob) == ["alert"]
    assert router.owner(kept) == 1 and router.owner(other) is router.owner(untagged) is None
    assert json.loads(other.frames[0].text) == {"type": "signed_out"}, "the spared session never reaches a client"


def test_router_survives_a_malformed_event():
    router = PersonalRouter()
    a = FakeOutlet()
    router.attach(a, 1)
    events = [{"frame": {}}, [1, "alert"], *personal.events_of([(1, {"type": "alert"})])]
    router.route({"type": personal.PERSONAL_EVENT, "events": events})
    assert kinds(a) == ["alert"]


def test_only_a_session_cookie_sends_a_socket_through_the_auth_stack():
    from ticker.edge.session import has_session_cookie

    def scope(*cookies: bytes) -> dict:
        return {"headers": [(b"host", b"x"), *((b"cookie", c) for c in cookies)]}

    assert has_session_cookie(scope(b"csrftoken=a; sessionid=b"))
    assert has_session_cookie(scope(b"csrftoken=a", b"sessionid=b"))
    assert not has_session_cookie(scope(b"xsessionid=b; csrftoken=sessionid=c"))
    assert not has_session_cookie(scope())


# -- through the real application and Redis ---------------------------------


def _signed_in(username: str) -> tuple[int, str, Client]:
    user = get_user_model().objects.create_user(username, password="a long enough password 1")
    client = Client()
    client.force_login(user)
    return user.pk, client.cookies["sessionid"].value, client


async def sign_in(username: str) -> tuple[int, str, Client]:
    """A user and a session of theirs: (id, session cookie value, the signed-in test client)."""
    return await database_sync_to_async(_signed_in)(username)


async def connect(session: str | None = None) -> WebsocketCommunicator:
    headers = [HOST, ORIGIN]
    if session is not None:
        headers.append((b"cookie", f"csrftoken=abc; sessionid={session}".encode()))
    communicator = WebsocketCommunicator(application, "/ws/quotes/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def publish(*events: tuple[int, dict]) -> None:
    await get_channel_layer().group_send(personal.PERSONAL_GROUP, personal.message(list(events)))


async def nothing_but_heartbeats(ws: WebsocketCommunicator, quiet_s: float = 0.5) -> None:
    """Fails on any frame but a heartbeat within ``quiet_s``."""
    while not await ws.receive_nothing(quiet_s):
        frame = json.loads(await ws.receive_from())
        assert frame["type"] == "heartbeat", f"unexpected frame {frame}"


async def whoami(ws: WebsocketCommunicator) -> str | None:
    await ws.send_to(text_data=json.dumps({"action": "whoami"}))
    frame = await recv_data(ws, 3)
    assert frame["type"] == "whoami"
    return frame["user"]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_personal_frame_reaches_its_user_only(market):
    alice, alice_session, _ = await sign_in("alice")
    bob, bob_session, _ = await sign_in("bob")
    alice_ws, alice_ws2 = await connect(alice_session), await connect(alice_session)
    bob_ws, anonymous_ws, forged_ws = await connect(bob_session), await connect(), await connect("not-a-session")
    assert await whoami(alice_ws) == "alice" and await whoami(bob_ws) == "bob"
    assert await whoami(anonymous_ws) is None and await whoami(forged_ws) is None

    await publish((alice, personal.alert_frame(ALERT)))
    for ws in (alice_ws, alice_ws2):
        assert await recv_data(ws, 3) == {"type": "alert", "alert": ALERT}
    await publish((bob, personal.watchlist_frame(["BBB", "AAA"])))
    assert await recv_data(bob_ws, 3) == {"type": "watchlist", "symbols": ["BBB", "AAA"]}
    for ws in (alice_ws, alice_ws2, anonymous_ws, forged_ws):
        await nothing_but_heartbeats(ws)
    await nothing_but_heartbeats(bob_ws, 0.1)
    for ws in (alice_ws, alice_ws2, bob_ws, anonymous_ws, forged_ws):
        await ws.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_signing_out_sends_signed_out_and_then_nothing_personal(market):
    alice, alice_session, alice_client = await sign_in("alice")
    bob, bob_session, _ = await sign_in("bob")
    alice_ws, bob_ws = await connect(alice_session), await connect(bob_session)
    await whoami(alice_ws)  # the hub holds both sockets

    await database_sync_to_async(alice_client.logout)()  # user_logged_out → every web process
    assert await recv_data(alice_ws, 3) == {"type": "signed_out"}
    await publish((alice, personal.alert_frame(ALERT)), (bob, personal.alert_frame(ALERT)))
    assert (await recv_data(bob_ws, 3))["type"] == "alert"
    await nothing_but_heartbeats(alice_ws)
    assert await whoami(alice_ws) is None, "the socket stays open, anonymous"
    await alice_ws.send_to(text_data=json.dumps({"action": "subscribe", "symbols": ["AAA"]}))
    assert (await recv_data(alice_ws, 3))["type"] == "snapshot", "quotes still flow"
    await nothing_but_heartbeats(bob_ws, 0.1)
    await alice_ws.disconnect()
    await bob_ws.disconnect()


def _change_password(client: Client) -> int:
    new = "another-long-password-for-tests-3k"
    data = {"old_password": "a long enough password 1", "new_password1": new, "new_password2": new}
    return client.post("/accounts/password_change/", data).status_code


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_password_change_signs_out_the_users_other_sessions_sockets_only(market):
    """Django ends a user's other sessions when they change their password in one: their open sockets stop
    getting personal frames at once (``signed_out``), while the sockets of the session that changed it, and the
    session itself, go on."""
    alice, here, here_client = await sign_in("alice")
    there_client = Client()
    await database_sync_to_async(there_client.force_login)(await get_user_model().objects.aget(pk=alice))
    there = there_client.cookies["sessionid"].value
    here_ws, there_ws = await connect(here), await connect(there)
    assert await whoami(here_ws) == "alice" and await whoami(there_ws) == "alice"

    assert await database_sync_to_async(_change_password)(here_client) == 302
    assert await recv_data(there_ws, 3) == {"type": "signed_out"}
    await publish((alice, personal.alert_frame(ALERT)))
    assert await recv_data(here_ws, 3) == {"type": "alert", "alert": ALERT}
    await nothing_but_heartbeats(there_ws)
    assert await whoami(there_ws) is None and await whoami(here_ws) == "alice"
    watchlists = [await database_sync_to_async(c.get)("/api/watchlist/") for c in (here_client, there_client)]
    assert [w.status_code for w in watchlists] == [200, 401], "Django kept this session and ended the other"
    await here_ws.disconnect()
    await there_ws.disconnect()


def _set_password(pk: int) -> None:
    user = get_user_model().objects.get(pk=pk)
    user.set_password("set-by-an-operator-for-tests-7q")
    user.save()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_password_set_elsewhere_signs_out_every_session_of_the_user(market):
    """A password set outside the user's own page (the admin's form, ``manage.py changepassword``: both
    ``set_password`` then ``save``) ends every session of the user: every socket of theirs signs out; another
    user's, and a save that leaves the password alone, change nothing."""
    alice, alice_session, _ = await sign_in("alice")
    bob, bob_session, _ = await sign_in("bob")
    alice_ws, bob_ws = await connect(alice_session), await connect(bob_session)
    assert await whoami(alice_ws) == "alice" and await whoami(bob_ws) == "bob"
    user = await get_user_model().objects.aget(pk=alice)
    user.first_name = "Alice"
    await database_sync_to_async(user.save)()  # the password as it was
    await nothing_but_heartbeats(alice_ws)

    await database_sync_to_async(_set_password)(alice)
    assert await recv_data(alice_ws, 3) == {"type": "signed_out"}
    await publish((alice, personal.alert_frame(ALERT)), (bob, personal.alert_frame(ALERT)))
    assert (await recv_data(bob_ws, 3))["type"] == "alert"
    await nothing_but_heartbeats(alice_ws)
    await alice_ws.disconnect()
    await bob_ws.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_closed_socket_leaves_the_routing(market):
    from ticker.hub import get_hub

    alice, alice_session, _ = await sign_in("alice")
    ws = await connect(alice_session)
    await whoami(ws)
    hub = await get_hub()
    assert alice in hub.personal.users
    await ws.disconnect()
    for _ in range(100):
        if alice not in hub.personal.users:
            break
        await asyncio.sleep(0.01)
    assert alice not in hub.personal.users and len(hub.personal) == 0


async def sse_events(session: str | None, until: str, limit: float = 3) -> str:
    """Open /api/quotes/stream/ through the application and read its body until ``until`` appears."""
    headers = [HOST, ORIGIN] + ([(b"cookie", f"sessionid={session}".encode())] if session else [])
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": "/api/quotes/stream/",
        "raw_path": b"/api/quotes/stream/",
        "query_string": b"symbols=AAA",
        "headers": headers,
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 50000),
    }
    stream = ApplicationCommunicator(application, scope)
    await stream.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await stream.receive_output(limit)
    assert start["status"] == 200, start
    body = ""
    try:
        async with asyncio.timeout(limit):
            while until not in body:
                body += (await stream.receive_output(limit))["body"].decode()
    finally:
        await stream.send_input({"type": "http.disconnect"})
        await stream.wait(1)
    return body


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_sse_carries_the_users_alert_event(market):
    alice, alice_session, _ = await sign_in("alice")
    bob, _, _ = await sign_in("bob")

    async def publish_soon():
        await asyncio.sleep(0.3)  # the stream's snapshot is out and its outlet attached by then
        await publish((bob, personal.alert_frame(ALERT | {"id": 8})), (alice, personal.alert_frame(ALERT)))

    task = asyncio.create_task(publish_soon())
    body = await sse_events(alice_session, "event: alert")
    await task
    event = body[body.index("event: alert") :].split("\n")[1]
    assert json.loads(event.removeprefix("data: ")) == {"type": "alert", "alert": ALERT}
    assert body.count("event: alert") == 1, "bob's alert is not alice's"


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_an_anonymous_sse_stream_gets_nothing_personal(market):
    from ticker.hub import get_hub

    alice, _, _ = await sign_in("alice")
    hub = await get_hub()

    async def publish_soon():
        await asyncio.sleep(0.3)
        await publish((alice, personal.alert_frame(ALERT)))

    task = asyncio.create_task(publish_soon())
    with pytest.raises(TimeoutError):
        await sse_events(None, "event: alert", limit=1)
    await task
    assert hub.personal.delivered == 0 and hub.personal.not_here == 1


# -- two web processes on one Redis (real daphne) -----------------------------


SIGN_IN = """
from django.contrib.auth import get_user_model
from django.test import Client
for name in ("alice", "bob"):
    user = get_user_model().objects.create_user(name, password="a long enough password 1")
    client = Client()
    client.force_login(user)
    print(name, user.pk, client.cookies["sessionid"].value)
"""


async def open_socket(base: str, session: str):
    import websockets

    url = base.replace("http://", "ws://") + "/ws/quotes/"
    return await websockets.connect(url, origin=base, additional_headers={"Cookie": f"sessionid={session}"})


async def next_frame(ws, seconds: float) -> dict:
    """The next frame but heartbeats within ``seconds`` (a TimeoutError past them)."""
    async with asyncio.timeout(seconds):
        while (frame := json.loads(await ws.recv()))["type"] == "heartbeat":
            pass
    return frame


async def frames_for(ws, seconds: float) -> list[dict]:
    """Every frame but heartbeats the socket receives within ``seconds``."""
    got = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), left))
        except TimeoutError:
            break
        if frame["type"] != "heartbeat":
            got.append(frame)
    return got


async def two_processes_route_by_user(site, bases: list[str], users: dict[str, tuple[int, str]]) -> None:
    from channels_redis.core import RedisChannelLayer

    (alice, alice_session), (bob, bob_session) = users["alice"], users["bob"]
    alice_sockets = [await open_socket(base, alice_session) for base in bases]
    bob_socket = await open_socket(bases[1], bob_session)
    sockets = [*alice_sockets, bob_socket]
    try:
        for ws, name in zip(sockets, ("alice", "alice", "bob"), strict=True):
            await ws.send(json.dumps({"action": "whoami"}))
            assert [f for f in await frames_for(ws, 1) if f["type"] == "whoami"] == [{"type": "whoami", "user": name}]
        layer = RedisChannelLayer(hosts=[site.env["REDIS_URL"]], prefix=site.env["TICKER_CHANNEL_PREFIX"])
        loop = asyncio.get_running_loop()
        for n in range(3):
            alert = ALERT | {"id": n}
            sent = loop.time()
            await layer.group_send(personal.PERSONAL_GROUP, personal.message([(alice, personal.alert_frame(alert))]))
            for ws in alice_sockets:
                # 1 s for the frame; a heartbeat may come first (this site runs no market: "interrupted" ones).
                assert await next_frame(ws, 1) == {"type": "alert", "alert": alert}
            assert loop.time() - sent < 1, "on both processes within 1 s"
        assert await frames_for(bob_socket, 0.5) == [], "bob never gets alice's frames"
        await layer.group_send(personal.PERSONAL_GROUP, personal.message([(bob, personal.watchlist_frame(["AAA"]))]))
        assert await frames_for(bob_socket, 1) == [{"type": "watchlist", "symbols": ["AAA"]}]
        for ws in alice_sockets:
            assert await frames_for(ws, 0.3) == []
    finally:
        for ws in sockets:
            await ws.close()


@pytest.mark.processes
def test_two_web_processes_route_personal_frames_by_user(tmp_path, redis_server):
    """User A on both daphne processes, user B on one: A's frame reaches A on both within 1 s, never B."""
    from .processes import running_site

    with running_site(tmp_path, redis_server.url, market=False) as site:
        printed = [line.split() for line in site.manage("shell", "-c", SIGN_IN).splitlines()]
        users = {line[0]: (int(line[1]), line[2]) for line in printed if line[:1] in (["alice"], ["bob"])}
        second = site.start_web(name="web2")
        asyncio.run(two_processes_route_by_user(site, [site.base, second], users))
        lab_handshake_shows_the_user(second, users["alice"][1])


def lab_handshake_shows_the_user(base: str, session: str) -> None:
    """The Lab's captured handshake carries the page's cookies, masked, and names the user the server saw."""
    import urllib.request

    def capture(cookie: str | None) -> dict:
        request = urllib.request.Request(base + "/api/lab/handshake/", headers={"Cookie": cookie} if cookie else {})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    signed_in = capture(f"csrftoken=tok123; sessionid={session}")
    assert signed_in["user"] == "alice" and signed_in["accept_ok"]
    assert "Cookie: csrftoken=•••; sessionid=•••\r\n" in signed_in["request"]
    assert session not in signed_in["request"] and "tok123" not in signed_in["request"]
    anonymous = capture(None)
    assert anonymous["user"] is None and "Cookie:" not in anonymous["request"]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_sign_out_on_the_event_loops_thread_is_published_too(market):
    """``alogout`` may send user_logged_out on the loop's own thread: the receiver publishes as a task."""
    from types import SimpleNamespace

    from ticker.edge.signout import publish_signed_out

    alice, alice_session, _ = await sign_in("alice")
    ws = await connect(alice_session)
    await whoami(ws)
    publish_signed_out(None, request=None, user=SimpleNamespace(pk=alice))
    publish_signed_out(None, request=None, user=None)  # an anonymous logout: nothing to say
    assert await recv_data(ws, 3) == {"type": "signed_out"}
    assert await whoami(ws) is None
    await ws.disconnect()
