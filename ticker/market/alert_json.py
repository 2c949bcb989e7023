"""The one shape of an alert in JSON: the API's answers and the ``alert`` frame (docs/protocol.md), from a model
(``alert_json``) or from the plain row a fire's UPDATE returns (``fired_json``, and ``fired_frames``: the frame's
text written directly; ticker/market/alerts.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.utils.dateparse import parse_datetime

from ticker.models import Alert

TRIGGERED = Alert.State.TRIGGERED


@dataclass(frozen=True, slots=True)
class Fire:
    """One alert fired in a step: whose, which, and its ``alert`` frame's JSON with the step's figures and moment
    (ticker/wire/personal.py), encoded once in the step (``alert_json.fired_frames``)."""

    user_id: int
    id: int
    frame: str

    @property
    def alert(self) -> dict[str, Any]:
        """The alert as ``GET /api/alerts/`` lists it (decoded from the frame: for tests and tools)."""
        return json.loads(self.frame)["alert"]


def alert_json(alert: Alert) -> dict[str, Any]:
    """The one shape of an alert: GET /api/alerts/, the 201 of a new one and the ``alert`` frame (docs/protocol.md)."""
    fields = {
        "symbol": alert.stock.symbol, "condition": alert.condition, "value": alert.value, "note": alert.note,
        "created_at": alert.created_at, "triggered_at": alert.triggered_at, "price": alert.triggered_price,
        "change_pct": alert.triggered_change_pct, "step": alert.triggered_step,
    }  # fmt: skip
    return _json(alert.pk, alert.state, fields, read=alert.read)


def fired_json(pk: int, fields: dict[str, Any]) -> dict[str, Any]:
    """A fired alert's ``alert_json`` from the row its UPDATE returned and the step's figures (no model)."""
    return _json(pk, TRIGGERED, fields, read=False)


def fired_frames(*, step: int, ts: int | None, triggered_at: str):
    """Makers of this step's ``alert`` frames (ticker/wire/personal.py) as JSON text, one per fire: byte for byte
    ``protocol.encode(alert_frame(fired_json(pk, fields), ts))``, written directly, with what every fire of the
    step shares put together once. At 2,000 fires a step building the dict, then encoding it, cost the market
    ~30 ms of its step (py-spy of bench_alerts' market).

    Returns ``(quoted, make)``: ``quoted(symbol, price, change_pct)`` is a quote's part of the frame, made once
    for every alert that quote fires (a price that crosses many thresholds of one symbol), and ``make(pk,
    condition, value, note, created_at, quote)`` a fire's frame with the values its UPDATE returned. What repeats
    from fire to fire (a value, a note, a moment of creation) is written once a step."""
    head = '{"type":"alert",' + ("" if ts is None else f'"ts":{ts},') + '"alert":{"id":'
    middle = ',"state":"triggered","created_at":'
    tail = f',"step":{step},"read":false}}}}'
    when = f',"triggered_at":{_text(triggered_at)},"price":'
    # Equal values write the same text (normalized); moments are kept as text only (two aware datetimes of one
    # instant are equal in any zone, and would write one offset for both).
    values: dict[Any, str] = {}
    texts: dict[str, str] = {}
    moments: dict[str, str] = {}

    def quoted(symbol: str, price, change_pct) -> tuple[str, str]:
        figures = f'{when}{float(price)!r},"change_pct":{float(change_pct)!r}{tail}'
        return f',"symbol":{_text(symbol)},"condition":', figures

    def make(pk: int, condition: str, value, note: str, created_at, quote: tuple[str, str]) -> str:
        if (value_text := values.get(value)) is None:
            value_text = values[value] = f',"value":"{format(_decimal(value).normalize(), "f")}","note":'
        if (condition_text := texts.get(condition)) is None:
            condition_text = texts[condition] = _text(condition)
        if (note_text := texts.get(note)) is None:
            note_text = texts[note] = _text(note)
        if type(created_at) is not str:
            moment = _text(_iso(created_at))
        elif (moment := moments.get(created_at)) is None:
            moment = moments[created_at] = _text(_iso(created_at))
        return f"{head}{pk}{quote[0]}{condition_text}{value_text}{note_text}{middle}{moment}{quote[1]}"

    return quoted, make


def _json(pk: int, state: str, fields: dict[str, Any], *, read: bool) -> dict[str, Any]:
    triggered = state == TRIGGERED
    created_at, triggered_at = _iso(fields["created_at"]), _iso(fields["triggered_at"])
    price, change_pct = fields["price"], fields["change_pct"]
    return {
        "id": pk,
        "symbol": fields["symbol"],
        "condition": fields["condition"],
        "value": format(_decimal(fields["value"]).normalize(), "f"),  # 101.5, never 101.5000 (as stored) or 1E+2
        "note": fields["note"],
        "state": state,
        "created_at": created_at,
        "triggered_at": triggered_at if triggered else None,
        "price": float(price) if triggered and price is not None else None,
        "change_pct": float(change_pct) if triggered and change_pct is not None else None,
        "step": fields["step"] if triggered else None,
        "read": read,
    }


# A string as JSON (json's own escaping: the same bytes its encoder writes).
_text = json.dumps


def _decimal(value) -> Decimal:
    """A stored decimal as a raw cursor gives it: Decimal on PostgreSQL, a float or int (or text) on SQLite."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def iso(value: datetime) -> str:
    """A moment as the JSON gives it (once per step for a step's fires: ``fired_frames`` takes the string)."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _iso(value) -> str | None:
    """A stored moment in ISO 8601 with its offset, as a raw cursor or a model gives it: aware, or text in UTC
    (SQLite's ``YYYY-MM-DD HH:MM:SS[.ffffff]``, PostgreSQL's ``(moment AT TIME ZONE 'UTC')::text``, whose fraction
    drops its trailing zeros), rewritten without parsing: at 2,000 fires a step parsing each cost more than the rest
    of its JSON; or already a string from ``iso``."""
    if value is None:
        return None
    if isinstance(value, str):
        iso_date = value[4:5] == value[7:8] == "-" and value[10:11] == " "  # DateStyle ISO (Django sets it)
        if iso_date and (len(value) == 19 or (value[19:20] == "." and value[20:].isdigit())):
            fraction = value[19:26].ljust(7, "0") if value[20:].strip("0") else ""
            return f"{value[:10]}T{value[11:19]}{fraction}+00:00"
        if value[10:11] == "T":
            return value
        return iso(parse_datetime(value))
    return iso(value)
