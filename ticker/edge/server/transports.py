"""daphne's server object, found once, and the Twisted transport of a connection (daphne 4.2.3, Twisted 26.10.0).

daphne does not hand its ``Server`` to the application: it is found through the reactor's readers (each listening
port's factory holds it). Every connection is a reader too, so that search costs one step per open connection:
done for each new connection it was O(N^2) in a reconnect storm. It is done once, when the reactor runs
(``install``) or on first use, and kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys

# Per daphne connection: at most this much queued in Twisted before the
# connection counts as backlogged, and this kernel send buffer (Linux doubles
# it), so a stalled client has at most ~100 KiB (about 30 frames of all
# symbols) in flight.
WRITE_BUFFER_BYTES = 16 * 1024
KERNEL_SEND_BUFFER_BYTES = 32 * 1024


def under_daphne() -> bool:
    return "daphne.server" in sys.modules


_found: tuple = ()  # daphne's Server objects, once found


def servers() -> tuple:
    """daphne's servers (one per process), found on first use and kept: they live as long as the process."""
    global _found
    if not _found:
        _found = tuple(_search())
    return _found


def _search() -> set:
    from twisted.internet import reactor

    found = {getattr(getattr(reader, "factory", None), "server", None) for reader in reactor.getReaders()}
    return {server for server in found if hasattr(server, "connections")}


def transport_of(scope: dict):
    """The Twisted transport carrying this ASGI connection, or None outside daphne.

    A WebSocket consumer runs in the task daphne created for it, so that task
    identifies its connection; an HTTP view runs in a task of Django's, so it
    is matched by peer address (which ``--proxy-headers`` would replace: then
    nothing is found and the stream simply has no backpressure).
    """
    if not under_daphne():
        return None
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    client = scope.get("client")
    host, port = (client[0], int(client[1])) if client else (None, None)
    for server in servers():
        # Newest first: the connection asking is one of the last to arrive.
        for protocol in reversed(server.connections):
            transport = getattr(protocol, "transport", None)
            if transport is None:
                continue
            if task is not None and server.connections[protocol].get("application_instance") is task:
                return transport
            peer = transport.getPeer()
            if port is not None and getattr(peer, "port", None) == port and getattr(peer, "host", None) == host:
                return transport
    return None


def limit_buffers(transport) -> None:
    transport.bufferSize = WRITE_BUFFER_BYTES
    with contextlib.suppress(OSError, AttributeError):
        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER_BYTES)


def websocket_protocol(transport):
    """daphne's WebSocket protocol on this transport, or None (plain HTTP, or TLS, whose transport wraps it)."""
    from daphne.ws_protocol import WebSocketProtocol

    protocol = getattr(transport, "protocol", None)
    return protocol if isinstance(protocol, WebSocketProtocol) else None
