"""The price alerts API (issue 23; docs/protocol.md, "Alerts"): a signed-in user's alerts, by session.

- ``GET /api/alerts/``: ``{"alerts": [...], "unread": N}``, newest first;
- ``POST /api/alerts/`` ``{"symbol", "condition", "value", "note"}``: 201 with the alert, armed at the current step;
- ``DELETE /api/alerts/<id>/``: 204; ``POST /api/alerts/<id>/rearm/``: the alert armed again at the current step;
- ``POST /api/alerts/read/``: the user's triggered alerts marked read.

Anonymous: a JSON 401. Writes need the CSRF token (``X-CSRFToken``): a JSON 403 naming it otherwise. Every bad
input is a JSON 400 naming the field, and nothing is stored. The market fires alerts (ticker/market/alerts.py).
"""

from __future__ import annotations

import functools
import json
import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from ticker.edge.http import answer_errors, check_csrf, could_be_listed, method_not_allowed
from ticker.market import lease as leases
from ticker.market import selectors
from ticker.market.alert_json import alert_json
from ticker.market.alerts import CHANGED_EVENT, CHANGED_GROUP
from ticker.models import ALERTS_MOST_PER_USER, Alert
from ticker.wire import protocol
from ticker.wire.protocol import ProtocolError

log = logging.getLogger(__name__)

FIELDS = ("symbol", "condition", "value", "note")
NOTE_MOST_CHARS = Alert._meta.get_field("note").max_length
VALUE_DIGITS = Alert._meta.get_field("value").max_digits
VALUE_PLACES = Alert._meta.get_field("value").decimal_places


def alerts_endpoint(*methods: str):
    """A signed-in user's endpoint: ``methods`` only (JSON 405), JSON 401 if anonymous, CSRF on writes (JSON 403)."""

    def wrap(view):
        @functools.wraps(view)
        def checked(request: HttpRequest, *args, **kwargs):
            if request.method not in methods:
                raise method_not_allowed(request, methods, f"use {', '.join(methods)}")
            if not request.user.is_authenticated:
                raise ProtocolError("not_signed_in", "Sign in to use alerts (/accounts/login/).", status=401)
            if request.method not in ("GET", "HEAD"):
                check_csrf(request)
            return view(request, *args, **kwargs)

        return csrf_exempt(answer_errors(checked))

    return wrap


@alerts_endpoint("GET", "HEAD", "POST")
def alerts(request: HttpRequest) -> HttpResponse:
    """GET: the user's alerts, newest first, and the unread count. POST: a new alert."""
    if request.method == "POST":
        return _create(request)
    mine = Alert.objects.filter(user=request.user)
    listed = mine.select_related("stock").order_by("-created_at", "-id")
    unread = mine.filter(state=Alert.State.TRIGGERED, read=False).count()
    return JsonResponse({"alerts": [alert_json(a) for a in listed], "unread": unread})


def _create(request: HttpRequest) -> HttpResponse:
    fields = _body(request)
    symbol = _symbol(fields.get("symbol"))
    condition = _condition(fields.get("condition"))
    value = _value(fields.get("value"), condition)
    note = _note(fields.get("note", ""))
    with transaction.atomic():
        # One user's creations queue here, so two at once cannot both pass the cap.
        User.objects.select_for_update().filter(pk=request.user.pk).first()
        if Alert.objects.filter(user=request.user).count() >= ALERTS_MOST_PER_USER:
            raise ProtocolError(
                "too_many_alerts",
                f"You have {ALERTS_MOST_PER_USER} alerts, the most allowed: delete one first.",
                most=ALERTS_MOST_PER_USER,
            )
        alert = Alert.objects.create(
            user=request.user, stock=symbol, condition=condition, value=value, note=note, armed_step=current_step()
        )
    return JsonResponse(alert_json(alert), status=201)


def current_step() -> int:
    """The market's current stored step: an alert armed now fires at a later step only."""
    return max(selectors.last_step(), leases.last_step())


def _body(request: HttpRequest) -> dict[str, Any]:
    try:
        fields = json.loads(request.body or b"null", parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", f"The body is not JSON: {protocol.quoted(str(exc), 80)}") from None
    if not isinstance(fields, dict):
        raise ProtocolError("bad_json", f"The body is a JSON object with {', '.join(FIELDS)}.")
    if unknown := sorted(set(fields) - set(FIELDS)):
        raise ProtocolError(
            "unknown_field",
            f"Unknown field(s): {', '.join(protocol.quoted(str(f)) for f in unknown[:5])}.",
            field=unknown[0],
        )
    return fields


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _symbol(raw: Any):
    if not isinstance(raw, str) or not raw.strip():
        raise ProtocolError("bad_symbol", "symbol is a listed symbol such as AAPL.", field="symbol")
    symbol = raw.strip().upper()
    stock = selectors.listed_stocks([symbol]).first() if could_be_listed(symbol) else None
    if stock is None:
        raise protocol.unknown_symbols([symbol])
    return stock


def _condition(raw: Any) -> str:
    if raw not in Alert.Condition.values:
        raise ProtocolError(
            "bad_condition",
            f"condition is one of {', '.join(Alert.Condition.values)}; got {protocol.quoted(str(raw))}.",
            field="condition",
        )
    return raw


def _value(raw: Any, condition: str) -> Decimal:
    """A finite decimal that fits the field (``VALUE_DIGITS`` digits, ``VALUE_PLACES`` after the point); a price
    is positive, a change % may be anything."""
    whole = VALUE_DIGITS - VALUE_PLACES
    explain = f"value is a number with at most {whole} digits before the point and {VALUE_PLACES} after"
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ProtocolError("bad_value", f"{explain}, such as 101.5.", field="value")
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise ProtocolError("bad_value", f"{explain}; got {protocol.quoted(str(raw))}.", field="value") from None
    if not value.is_finite():
        raise ProtocolError("bad_value", f"{explain}; {protocol.quoted(str(raw))} is not finite.", field="value")
    digits, exponent = value.as_tuple()[1:]
    places = max(0, -exponent)
    if places > VALUE_PLACES or len(digits) + max(0, exponent) - places > whole:
        raise ProtocolError("bad_value", f"{explain}; got {protocol.quoted(str(raw))}.", field="value")
    if condition.startswith("price_") and value <= 0:
        raise ProtocolError("bad_value", "value is a price here: more than 0.", field="value")
    return value


def _note(raw: Any) -> str:
    if not isinstance(raw, str) or len(raw) > NOTE_MOST_CHARS or "\x00" in raw:
        raise ProtocolError("bad_note", f"note is text of at most {NOTE_MOST_CHARS} characters.", field="note")
    return raw.strip()


def _mine(request: HttpRequest, alert_id: int) -> Alert:
    """The user's alert ``alert_id``; someone else's is as missing as one that never was."""
    alert = Alert.objects.select_related("stock").filter(pk=alert_id, user=request.user).first()
    if alert is None:
        raise ProtocolError("not_found", f"You have no alert {alert_id}.", status=404)
    return alert


@alerts_endpoint("DELETE")
def alert(request: HttpRequest, alert_id: int) -> HttpResponse:
    """DELETE /api/alerts/<id>/: 204."""
    _mine(request, alert_id).delete()
    return HttpResponse(status=204)


@alerts_endpoint("POST")
def rearm(request: HttpRequest, alert_id: int) -> HttpResponse:
    """POST /api/alerts/<id>/rearm/: armed again at the current step (the market hears of it at once)."""
    alert = _mine(request, alert_id)
    alert.state, alert.armed_step, alert.read = Alert.State.ARMED, current_step(), True
    alert.triggered_at = alert.triggered_step = alert.triggered_price = alert.triggered_change_pct = None
    alert.save(
        update_fields=[
            "state", "armed_step", "read", "triggered_at", "triggered_step", "triggered_price", "triggered_change_pct"
        ]
    )  # fmt: skip
    tell_market([alert.pk])
    return JsonResponse(alert_json(alert))


@alerts_endpoint("POST")
def mark_read(request: HttpRequest) -> HttpResponse:
    """POST /api/alerts/read/: the user's triggered alerts read (the page calls it when the list is opened)."""
    marked = Alert.objects.filter(user=request.user, state=Alert.State.TRIGGERED, read=False).update(read=True)
    return JsonResponse({"marked": marked, "unread": 0})


def tell_market(ids: list[int]) -> None:
    """Tell the leading market to read these alerts again (re-armed, enabled): its book only reads new ids by
    itself. Best effort: the change is stored; a lost notice delays the alert until the next takeover."""
    layer = get_channel_layer()
    if layer is None or not ids:
        return
    try:
        async_to_sync(layer.group_send)(CHANGED_GROUP, {"type": CHANGED_EVENT, "ids": list(ids)})
    except Exception as exc:
        log.warning("could not tell the market about alerts %s: %s", ids[:10], exc)
