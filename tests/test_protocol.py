"""Validation of client messages: every bad input has a code and a fixable message."""

import json

import pytest

from ticker.protocol import MAX_MESSAGE_BYTES, MAX_SYMBOLS_PER_MESSAGE, Command, ProtocolError, parse_client_message


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
