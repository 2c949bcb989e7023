"""autobahn's protocol options held once, on our protocol class, not copied into every connection (issue 24).

When a connection opens, autobahn copies each of its ~30 options (``CONFIG_ATTRS``: timeouts, sizes, the
compression accept function, ...) from the factory onto the protocol instance, unless the instance already has
it ("to set configuration individually"): with daphne's and its own attributes that made a 109-attribute
instance dict, 3.3 KB a connection (``bench_connmem``). Once daphne has set the factory's options and the site
has added its own (the compression accept function), ``share_protocol_options`` sets each option on the class
(our ``GuardedWebSocketProtocol``) with the factory's value, so autobahn finds it there and copies nothing; every
connection reads the same values it would have copied. Installed last, when the reactor runs
(ticker/edge/server/__init__.py).
"""

from __future__ import annotations

import logging

from ticker.edge.server.transports import servers

log = logging.getLogger(__name__)


def share_protocol_options() -> bool:
    """Set each of autobahn's protocol options on each daphne server's protocol class, from its factory.

    False (and nothing changed) where a server's factory does not build our protocol class, or where the options
    are not listed (another autobahn): each connection then copies them, as autobahn does."""
    from ticker.edge.server.guards import _guard_classes

    ours = _guard_classes()[0]
    factories = [server.ws_factory for server in servers() if hasattr(server, "ws_factory")]
    names = getattr(ours, "CONFIG_ATTRS", None)
    if len(factories) != 1 or factories[0].protocol is not ours or not names:
        log.info("autobahn's options are copied into each connection (%d daphne servers found)", len(factories))
        return False
    factory = factories[0]
    for name in names:
        value = getattr(factory, name)
        # A function on a class is bound to the instance when read: the compression accept function must be
        # called as the factory holds it, so a callable is held as a staticmethod.
        setattr(ours, name, staticmethod(value) if callable(value) else value)
    return True
