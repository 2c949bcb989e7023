"""Validation of client messages: every bad input has a code and a fixable message."""

import dataclasses
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticker.market.prices import Tick
from ticker.wire.protocol import (
    MAX_MESSAGE_BYTES,
    MAX_SYMBOLS_PER_MESSAGE,
    Command,
    ProtocolError,
    parse_client_message,
)

from .clients import is_whole, merge_delta


def parse(obj) -> Command:
    return parse_client_message(json.dumps(obj))


def test_subscribe_normalises_symbols():
    """Symbols are upper-cased, trimmed and de-duplicated, order kept."""
    assert parse({"action": "subscribe", "symbols": ["aapl", " MSFT", "AAPL"]}) == Command(
        "subscribe", ("AAPL", "MSFT")
    )


def test_star_means_all():
    """["*"] subscribes to every symbol."""
    assert parse({"action": "subscribe", "symbols": ["*"]}) == Command("subscribe", ("*",))


def test_ping_needs_no_symbols():
    """A ping is just an action."""
    assert parse({"action": "ping"}) == Command("ping")


@pytest.mark.parametrize(
    "text, code",
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_message"),
        ('"subscribe"', "bad_message"),
        ('{"action": "dance"}', "unknown_action"),
        ("{}", "unknown_action"),
        ('{"action": "subscribe"}', "bad_symbols"),
        ('{"action": "subscribe", "symbols": []}', "bad_symbols"),
        ('{"action": "subscribe", "symbols": "AAPL"}', "bad_symbols"),
        ('{"action": "subscribe", "symbols": [1]}', "bad_symbols"),
        ('{"action": "unsubscribe", "symbols": ["*", "AAPL"]}', "bad_symbols"),
        (None, "bad_frame"),
    ],
)
def test_bad_messages_have_codes(text, code):
    """Each kind of bad input is named by its own error code."""
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(text)
    assert caught.value.code == code
    frame = caught.value.frame()
    assert frame["type"] == "error" and frame["code"] == code and frame["message"]


def test_too_many_symbols_is_refused():
    """A subscription over the cap is refused with the cap in the message."""
    with pytest.raises(ProtocolError) as caught:
        parse({"action": "subscribe", "symbols": [f"S{i}" for i in range(MAX_SYMBOLS_PER_MESSAGE + 1)]})
    assert caught.value.code == "too_many_symbols"
    assert str(MAX_SYMBOLS_PER_MESSAGE) in caught.value.message


def test_oversized_message_is_refused():
    """A message over the size limit is refused before it is parsed."""
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(json.dumps({"action": "ping", "pad": "x" * MAX_MESSAGE_BYTES}))
    assert caught.value.code == "too_large"


def test_the_fields_of_a_whole_quote_are_one_list_for_the_server_the_delta_format_and_the_browser():
    """A delta is told from a whole quote by carrying every field: the server's quote, its field list and the
    browser's (static/ticker/js/delta.js) must agree, in order, or a whole quote would be taken for a delta."""
    import re
    from decimal import Decimal
    from pathlib import Path

    from ticker.market import prices as market
    from ticker.wire import protocol

    tick = market.Tick(symbol="AAPL", price=Decimal("190.00"), reference_price=Decimal("189.50"), seq=7, ts=1)
    assert tuple(protocol.quote(tick)) == protocol.QUOTE_FIELDS
    source = (Path(__file__).parent.parent / "static/ticker/js/delta.js").read_text()
    listed = re.search(r"export const QUOTE_FIELDS = \[(.*?)\];", source, re.S).group(1)
    assert tuple(re.findall(r'"(\w+)"', listed)) == protocol.QUOTE_FIELDS


def test_a_delta_carries_symbol_seq_and_the_changed_fields_but_never_the_derived_ones():
    from ticker.wire.protocol import quote_delta

    before = {"symbol": "AAPL", "price": 190.0, "prev_close": 189.5, "change": 0.5, "change_pct": 0.26}
    before |= {"open": 189.5, "high": 190.0, "low": 189.5, "volume": 100, "seq": 7, "ts": 1, "halted": False}
    after = before | {"price": 190.5, "change": 1.0, "change_pct": 0.53, "high": 190.5, "seq": 8, "ts": 2}
    assert quote_delta(after, before) == {"symbol": "AAPL", "seq": 8, "price": 190.5, "high": 190.5, "ts": 2}
    assert quote_delta(after, None) is after  # nothing to compare with: the whole quote
    assert quote_delta(after | {"seq": 9}, before) == after | {"seq": 9}  # a step missed: whole


@pytest.mark.parametrize(
    "text",
    [
        "[" * 2000 + "]" * 2000,  # issue 20: RecursionError, not ValueError
        '{"a":' * 1500 + "1" + "}" * 1500,
        '{"action": "movers", "count": NaN}',
        '{"action": "subscribe", "symbols": ["AAPL"], "max_rate": Infinity}',
        '{"action": "ping", "x": -Infinity}',
        '{"action": "movers", "count": 1e400}',
        '{"action": "movers", "count": ' + "9" * 4301 + "}",
    ],
    ids=["nested-lists", "nested-objects", "nan", "infinity", "minus-infinity", "1e400", "4301-digits"],
)
def test_json_the_parser_cannot_read_is_bad_json(text):
    """Whatever makes a message unreadable (depth, NaN/Infinity, a number past a double or 4,300 digits): bad_json."""
    assert len(text.encode()) <= MAX_MESSAGE_BYTES
    with pytest.raises(ProtocolError) as error:
        parse_client_message(text)
    assert error.value.code == "bad_json" and error.value.message.startswith("Message is not valid JSON")


cents = st.integers(0, 10_000_000).map(lambda c: Decimal(c) / 100)


@st.composite
def consecutive_ticks(draw) -> tuple[Tick, Tick]:
    """A symbol's tick and its next (seq + 1), with any fields changed or kept."""
    seq = draw(st.integers(1, 10**9))
    ticks = []
    for n in (seq, seq + 1):
        price, close = draw(cents), draw(cents)
        high, low, open_ = (draw(st.none() | cents) for _ in range(3))
        ticks.append(
            Tick(
                symbol="AAPL",
                price=price,
                reference_price=close,
                seq=n,
                ts=draw(st.integers(0, 2**53)),
                halted=draw(st.booleans()),
                prev_close=close,
                open=open_ if open_ is not None else price,
                high=high if high is not None else price,
                low=low if low is not None else price,
                volume=draw(st.integers(0, 10**12)),
            )
        )
    if draw(st.booleans()):  # often only some fields move
        ticks[1] = dataclasses.replace(ticks[0], seq=seq + 1, price=ticks[1].price)
    return ticks[0], ticks[1]


@given(consecutive_ticks())
def test_a_delta_applied_to_the_quote_it_was_made_from_gives_the_new_quote(ticks):
    """The delta format loses nothing: quote_delta(B, A) merged onto A, change and change_pct worked out as the
    browser does (static/ticker/js/delta.js derive), is B."""
    from ticker.wire.protocol import DERIVED_FIELDS, quote, quote_delta

    before, after = (quote(t) for t in ticks)
    delta = quote_delta(after, before)
    assert not set(DERIVED_FIELDS) & set(delta)
    assert not is_whole(delta) and merge_delta(before, delta) == after
