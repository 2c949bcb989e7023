"""Who a WebSocket is (issue 23): the page's session, read at the handshake, only when there is one.

channels' ``AuthMiddlewareStack`` sets ``scope["user"]`` from the session cookie; for that it hops to a worker
thread on every connection, a session cookie or not. A socket without the session cookie (an integrator, a
benchmark client, a visitor never signed in) can only be anonymous, so it gets ``AnonymousUser`` at once and
costs what it did before; one with the cookie goes through the stack (one session read, and the user's).
"""

from __future__ import annotations

import hashlib

from channels.auth import AuthMiddlewareStack
from django.conf import settings
from django.contrib.auth.models import AnonymousUser


def has_session_cookie(scope: dict) -> bool:
    """True if the handshake's Cookie header names the session cookie (whatever its value)."""
    name = settings.SESSION_COOKIE_NAME.encode() + b"="
    for header, value in scope.get("headers", ()):
        if header == b"cookie" and any(part.strip().startswith(name) for part in value.split(b";")):
            return True
    return False


def session_tag(session) -> str | None:
    """A session (or its key) named without the key (a digest: the key is a credential, the tag goes over the
    channel layer), or None without one: what a password change made in that session spares of the user's
    connections (ticker/edge/signout.py)."""
    key = session if isinstance(session, str) else getattr(session, "session_key", None)
    return hashlib.sha256(key.encode()).hexdigest()[:32] if key else None


class SessionUser:
    """ASGI middleware: ``scope["user"]`` for the inner application, read from the session if there is one."""

    def __init__(self, inner):
        self.inner = inner
        self.with_session = AuthMiddlewareStack(inner)

    async def __call__(self, scope, receive, send):
        if has_session_cookie(scope):
            return await self.with_session(scope, receive, send)
        return await self.inner({**scope, "user": AnonymousUser()}, receive, send)
