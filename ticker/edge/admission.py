"""Admission control: a web process holds at most ``TICKER_MAX_CONNECTIONS`` connections open (issue 12).

Past a process's capacity every client's latency degrades at once (docs/benchmarks.md: 5,000 clients
over two processes on the 2-core machine went past 100 ms at p99 in one run of nine, and further
clients would push every one of them further); a client turned away is told to come back later,
or goes to another replica, and the clients already in keep their latency.

Counted are the connections a process **holds open**: WebSockets, Server-Sent Event streams and
long-poll requests (each waits up to 30 s). A plain poll (``GET /api/quotes/`` without ``since``) is
not: it is answered from the database in a few milliseconds and holds nothing afterwards, so at any
moment a process has few of them in flight, and it is the transport a client falls back to when
nothing else works; refusing it would turn a busy process into one that serves nobody.

One ``Admission`` object per process owns the count (``connections()``): a connection takes a
``Slot`` when it is admitted and gives it back exactly once, on every way out (normal close, an
error, a cancelled task at shutdown); ``Slot.release`` is idempotent, so a second path out never
counts twice.

A fair share per address (issue 21): 2,500 SSE streams opened in 11 s from one address filled the
whole cap, and every other client was then refused. So one client address may hold at most
``TICKER_MAX_CONNECTIONS_PER_ADDRESS`` of a process's connections (default a tenth of the cap); past
it that address is refused the same way as at the cap, with its own reason (``AddressFull``). The
address is the one ``ticker.edge.security`` trusts (the peer, or X-Forwarded-For's entry written by a
trusted proxy), and an IPv6 address counts for its whole /64: one host is usually given a /64 and
can rotate through it at will, so counting single IPv6 addresses would not hold it back.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings

# How long a refused client should wait before trying again (Retry-After, and the 1013 close's
# reason). Long enough that a crowd refused together does not hammer the process (the dashboard
# adds up to half of it again as jitter), short enough that a slot freed is taken within seconds.
RETRY_AFTER_S = 5


class Full(Exception):
    """The process already holds its cap of connections: refuse this one, and say when to come back."""

    retry_after_s = RETRY_AFTER_S
    reason = "server_full"  # the error code (SSE, long-poll) and the refusal metric's label

    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"The server is full ({self.limit} connections); try again in {self.retry_after_s} s."

    @property
    def close_reason(self) -> str:
        """The WebSocket's 1013 reason; the dashboard reads the wait from "try again in N s" (transport.js)."""
        return f"server full: try again in {self.retry_after_s} s"


class AddressFull(Full):
    """The client's address already holds its share of the process's connections (issue 21): refuse this one."""

    reason = "address_full"

    @property
    def message(self) -> str:
        return f"Too many connections from your address ({self.limit}); try again in {self.retry_after_s} s."

    @property
    def close_reason(self) -> str:
        return f"too many connections from your address ({self.limit}): try again in {self.retry_after_s} s"


def address_key(address: str | None) -> str | None:
    """What an address is counted as: an IPv4 address itself, an IPv6 address its /64 ("2001:db8::/64").

    None (no address: a Unix socket, an in-process test) is not counted per address. An IPv4 address
    written as IPv6 (``::ffff:192.0.2.1``, from a dual-stack socket) is that IPv4 address, so one client
    is one key whichever way its socket was opened. Anything that is not an IP address counts as itself.
    """
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class Slot:
    """One admitted connection's place in its process's count; ``release()`` gives it back, once."""

    __slots__ = ("_admission", "_key")

    def __init__(self, admission: Admission, key: str | None = None):
        self._admission: Admission | None = admission
        self._key = key

    def release(self) -> None:
        admission, self._admission = self._admission, None
        if admission is not None:
            admission.give_back(self._key)

    @property
    def held(self) -> bool:
        return self._admission is not None


class Admission:
    """The count of connections a process holds, against its cap (``limit``; 0: no cap) and each address's
    share of it (``per_address``; 0: no share).

    Called only from the process's event loop (consumers and async views), so the counts need no
    lock: ``admit`` checks and takes in one step, with no await in between. ``by_address`` holds an
    entry only for an address that holds a connection now (removed when its count falls to 0), so it
    is never larger than ``held``, whatever addresses come and go.
    """

    def __init__(self, limit: int, per_address: int = 0):
        self.limit = limit
        self.per_address = per_address
        self.held = 0
        self.by_address: dict[str, int] = {}
        self.refused = 0  # connections turned away since start, for either reason (for operators and tests)
        self.refused_address = 0  # of those, the ones over their address's share

    def admit(self, address: str | None = None) -> Slot:
        """Take a slot for a connection from ``address`` (the trusted client address; None: not counted per
        address), or raise ``Full`` when the process holds its cap already, ``AddressFull`` when the address
        holds its share. The cap is checked first: when the process is full that is what a client is told."""
        if self.limit and self.held >= self.limit:
            self.refused += 1
            raise Full(self.limit)
        key = address_key(address) if self.per_address else None
        if key is not None:
            count = self.by_address.get(key, 0)
            if count >= self.per_address:
                self.refused += 1
                self.refused_address += 1
                raise AddressFull(self.per_address)
            self.by_address[key] = count + 1
        self.held += 1
        return Slot(self, key)

    def give_back(self, key: str | None) -> None:
        """Called once per slot, by ``Slot.release``: one connection fewer, for the process and its address."""
        self.held -= 1
        if key is not None:
            left = self.by_address[key] - 1
            if left:
                self.by_address[key] = left
            else:
                del self.by_address[key]


_process: Admission | None = None


def connections() -> Admission:
    """This process's admission count, made from ``TICKER_MAX_CONNECTIONS`` and
    ``TICKER_MAX_CONNECTIONS_PER_ADDRESS`` on first use."""
    global _process
    if _process is None:
        _process = Admission(settings.TICKER_MAX_CONNECTIONS, settings.TICKER_MAX_CONNECTIONS_PER_ADDRESS)
    return _process
