"""Going away: on SIGTERM, daphne's WebSocket clients get a 1001 close frame, not a dropped connection.

daphne stops its Twisted reactor on SIGTERM and cancels every application;
the sockets are then simply cut, and browsers see close code 1006 (abnormal).
An application cannot send 1001 itself: autobahn, under daphne, lets an ASGI
``websocket.close`` carry only 1000 or 3000-4999 (django/daphne#374). So a
shutdown trigger, registered before daphne registers its own, sends 1001
("going away", RFC 6455 7.4.1) on every open WebSocket through autobahn's
frame API and gives clients a moment to answer before the reactor stops.
Depends on daphne's HTTPFactory.server and Server.connections (daphne is
pinned; tests/test_shutdown.py runs the real thing).
"""

from __future__ import annotations

import sys

GOING_AWAY = 1001
GRACE_S = 1.0
_installed = False


def install() -> None:
    """Register the shutdown trigger with daphne's reactor; does nothing outside daphne."""
    global _installed
    if _installed or "daphne.server" not in sys.modules:
        return
    from twisted.internet import reactor

    reactor.addSystemEventTrigger("before", "shutdown", close_websockets)
    _installed = True


def _open_websockets() -> list:
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.internet import reactor

    servers = {getattr(getattr(reader, "factory", None), "server", None) for reader in reactor.getReaders()} - {None}
    return [
        protocol
        for server in servers
        for protocol in list(getattr(server, "connections", ()))
        if isinstance(protocol, WebSocketProtocol) and protocol.state == protocol.STATE_OPEN
    ]


def close_websockets():
    """Send 1001 on every open WebSocket; the Deferred fires once all closed, or after GRACE_S."""
    from twisted.internet import reactor, task

    sockets = _open_websockets()
    for protocol in sockets:
        protocol.sendCloseFrame(code=GOING_AWAY, reasonUtf8=b"server shutting down", isReply=False)
    if not sockets:
        return None
    deadline = reactor.seconds() + GRACE_S

    def check():
        if reactor.seconds() >= deadline or all(p.state == p.STATE_CLOSED for p in sockets):
            loop.stop()

    loop = task.LoopingCall(check)
    return loop.start(0.05)
