"""Personal events: what reaches one user's open connections, on whichever web process they are (issue 23).

Both processes publish them through the channel layer to one group every web process joins, as the quotes
batch does: the market after a step's commit (the step's alert fires), a web process after a user's change
(a new watchlist, a sign-out). One message carries every event of its moment; each web process routes the
events to the connections of their users and drops the rest. So a step with a thousand fires costs one
``group_send``, not a thousand (channels_redis pays a Redis round trip per group).

Message on the channel layer::

    {"type": "personal.events", "events": [[42, "alert", "{\"type\":\"alert\",...}"], ...]}

Each event is ``[user id, the frame's type, the frame's JSON]``: encoded once, by its sender, so a web process
writes it as it comes (at 2,000 fires a step, decoding and re-encoding them as dicts cost the web process about
as much again as the step's quotes broadcast: docs/benchmarks.md, "Personal frames").

A step's alert fires ride in the step's own batch instead (``"events"`` beside ``"quotes"`` in the
``quote.batch`` message, ticker/market/loop.py): each web process then writes a user's alert in the same
socket write as that connection's quotes frame of the step (ticker/hub/personal.py, ``PersonalRouter.ride``),
so a fire costs no send of its own and arrives with its step's prices. The separate message is for what is not
a step (a watchlist change, a sign-out) and for fires whose batch could not be sent.

Frames a user's connections get (docs/protocol.md, "Personal frames"):

- ``{"type": "alert", "alert": {...}}``: an alert of theirs fired (the alert as ``GET /api/alerts/`` lists it).
- ``{"type": "watchlist", "symbols": [...]}``: their watchlist changed, on this or another device.
- ``{"type": "signed_out"}``: they signed out; the connection carries nothing personal from then on.
"""

from __future__ import annotations

import json
from typing import Any

from ticker.wire import protocol

PERSONAL_GROUP = "personal"
PERSONAL_EVENT = "personal.events"


def message(events: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """The channel-layer message for (user id, frame) pairs."""
    return message_of(events_of(events))


def message_of(events: list[list], **extra: Any) -> dict[str, Any]:
    """The channel-layer message for events already encoded (``[user id, type, JSON]``, as ``events_of`` makes
    them, or the market's fires); ``extra``: keys beside the events."""
    return {"type": PERSONAL_EVENT, "events": events, **extra}


def events_of(pairs: list[tuple[int, dict[str, Any]]]) -> list[list]:
    """(user id, frame) pairs as a message's ``events``: a personal message's, or a batch's (its alert fires)."""
    return [[user, frame["type"], protocol.encode(frame)] for user, frame in pairs]


def decoded(event: list) -> tuple[int, dict[str, Any]]:
    """One event's user and frame (for tests and tools; a web process writes the JSON as it is)."""
    user, _kind, text = event
    return user, json.loads(text)


def alert_frame(alert: dict[str, Any], ts: int | None = None) -> dict[str, Any]:
    """``ts``: the step's moment (ms), as its quotes carry it, so a client can tell how late the alert came."""
    return {"type": "alert", "alert": alert} if ts is None else {"type": "alert", "ts": ts, "alert": alert}


def watchlist_frame(symbols: list[str]) -> dict[str, Any]:
    return {"type": "watchlist", "symbols": list(symbols)}


def signed_out_frame() -> dict[str, Any]:
    return {"type": "signed_out"}


def signed_out_message(user_id: int, *, sparing: str | None = None) -> dict[str, Any]:
    """The message that signs a user's connections out on every web process; ``sparing``: the connections of one
    session (``ticker.edge.session.session_tag``) keep theirs, as after a password change made in it (Django
    ends the user's other sessions then, and keeps that one). The spared session rides beside the events, never
    in the frame a client gets; a web process that does not know the key signs them all out (the safe side)."""
    events = events_of([(user_id, signed_out_frame())])
    return message_of(events) if sparing is None else message_of(events, sparing=sparing)
