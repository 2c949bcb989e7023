"""The one shape of an alert in JSON: the API's answers and the ``alert`` frame (docs/protocol.md), from a model
(``alert_json``) or from the plain row a fire's UPDATE returns (``fired_json``; ticker/market/alerts.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.utils.dateparse import parse_datetime

from ticker.models import Alert

TRIGGERED = Alert.State.TRIGGERED


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


def _decimal(value) -> Decimal:
    """A stored decimal as a raw cursor gives it: Decimal on PostgreSQL, a float or int (or text) on SQLite."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def iso(value: datetime) -> str:
    """A moment as the JSON gives it (once per step for a step's fires: ``fired_json`` takes the string)."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _iso(value) -> str | None:
    """A stored moment in ISO 8601 with its offset, as a raw cursor or a model gives it: aware on PostgreSQL, text
    in UTC on SQLite (Django's ``YYYY-MM-DD HH:MM:SS[.ffffff]``, rewritten without parsing: at 2,000 fires a step
    parsing each cost more than the rest of its JSON), or already a string from ``iso``."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) in (19, 26) and value[10] == " ":
            return f"{value[:10]}T{value[11:]}+00:00"
        if value[10:11] == "T":
            return value
        return iso(parse_datetime(value))
    return iso(value)
