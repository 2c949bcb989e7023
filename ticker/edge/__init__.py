"""The web process's edge: every way a client connects (WebSocket, SSE, long-poll, poll), who is let in, and the
one adapter to daphne, autobahn and Twisted internals (``server``).

Runs in daphne. Reads quotes from the hub (``ticker.hub``), never from the market.
"""
