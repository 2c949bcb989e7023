"""permessage-deflate on daphne (RFC 7692; docs/protocol.md, "Compression"): daphne declines every offer, so its
WebSocket factory is given an accept function (autobahn 26.10.2) that answers ``server_no_context_takeover``, and
every message is compressed on its own, once for every connection (ticker/wire/frames.py).
"""

from __future__ import annotations

import logging
from typing import Any

from ticker.edge.server.transports import servers
from ticker.wire.frames import DEFLATE_WINDOW_BITS, deflate
from ticker.wire.protocol import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

CLIENT_WINDOW_BITS = 9  # asked of clients that allow it: a 512-byte window for their few small messages
# One piece of a compressed client message is inflated no further than this: else a 1 KB message could cost daphne's
# whole 1 MiB limit. Under it, the frame guard (below) refuses the message once its inflated bytes pass
# protocol.MAX_MESSAGE_BYTES (too_large, 1009, as for an uncompressed one); past it autobahn drops the connection.
INFLATE_LIMIT_BYTES = 8 * MAX_MESSAGE_BYTES


def enable_compression() -> bool:
    """Let daphne's WebSocket factories accept permessage-deflate; False (and a warning) if none was found."""
    factories = [server.ws_factory for server in servers() if hasattr(server, "ws_factory")]
    for factory in factories:
        factory.setProtocolOptions(perMessageCompressionAccept=accept_deflate)
    if not factories:
        log.warning("no daphne WebSocket factory found: WebSockets stay uncompressed (see ticker/edge/server/)")
    return bool(factories)


def accept_deflate(offers: list) -> Any:
    """autobahn's ``perMessageCompressionAccept``: the first permessage-deflate offer, answered with
    ``server_no_context_takeover``, ``client_no_context_takeover`` (a server may ask for it unasked, RFC 7692
    7.1.1.2; autobahn's parser always allows it) and, when the client offered ``client_max_window_bits``,
    ``client_max_window_bits=9``: a client's messages are a few small commands, not worth the 32 KiB inflate
    window autobahn would otherwise keep for every connection."""
    from autobahn.websocket.compress import PerMessageDeflateOffer

    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return _deflate_accept_class()(
                offer,
                request_no_context_takeover=offer.accept_no_context_takeover,
                request_max_window_bits=CLIENT_WINDOW_BITS if offer.accept_max_window_bits else 0,
                no_context_takeover=True,
                max_message_size=INFLATE_LIMIT_BYTES,
            )
    return None


_DeflateAccept: Any = None


def _deflate_accept_class():
    """autobahn's offer accept, saying ``server_no_context_takeover`` even when the client did not ask: autobahn
    writes it only when asked, and a client may then keep its 32 KiB window for nothing (RFC 7692 7.1.1.1)."""
    global _DeflateAccept
    if _DeflateAccept is None:
        from autobahn.websocket.compress import PerMessageDeflateOfferAccept

        class DeflateAccept(PerMessageDeflateOfferAccept):
            def get_extension_string(self):
                text = super().get_extension_string()
                return text if "server_no_context_takeover" in text else text + "; server_no_context_takeover"

        _DeflateAccept = DeflateAccept
    return _DeflateAccept


def deflate_agrees() -> bool:
    """Frames compressed by ``deflate`` read back by autobahn's own client-side permessage-deflate, as a client
    that keeps its inflate window across messages (allowed: our answer only says the server will not)."""
    from autobahn.websocket.compress import PerMessageDeflate

    payload = b'{"type":"quotes","quotes":[' + b",".join([b'{"symbol":"AAPL","seq":1}'] * 40) + b"]}"
    try:
        reader = PerMessageDeflate(False, False, False, 15, 0, None)
        for _ in range(2):  # twice: the second message must decode after the first, on the same window
            reader.start_decompress_message()
            data = reader.decompress_message_data(deflate(payload))
            reader.end_decompress_message()
            if data != payload:
                return False
    except Exception:
        return False
    return True


def shares_deflate(protocol) -> bool:
    """True if this connection negotiated permessage-deflate in a form our shared compressed frames fit:
    no server context takeover, and a server window at least ours."""
    pmce = getattr(protocol, "_perMessageCompress", None)
    return (
        pmce is not None
        and pmce.EXTENSION_NAME == "permessage-deflate"
        and getattr(pmce, "server_no_context_takeover", False) is True
        and getattr(pmce, "server_max_window_bits", 0) >= DEFLATE_WINDOW_BITS
    )
