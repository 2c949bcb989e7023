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
"""

from __future__ import annotations

from django.conf import settings

# How long a refused client should wait before trying again (Retry-After, and the 1013 close's
# reason). Long enough that a crowd refused together does not hammer the process (the dashboard
# adds up to half of it again as jitter), short enough that a slot freed is taken within seconds.
RETRY_AFTER_S = 5


class Full(Exception):
    """The process already holds its cap of connections: refuse this one, and say when to come back."""

    retry_after_s = RETRY_AFTER_S

    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(f"The server is full ({limit} connections); try again in {self.retry_after_s} s.")


class Slot:
    """One admitted connection's place in its process's count; ``release()`` gives it back, once."""

    __slots__ = ("_admission",)

    def __init__(self, admission: Admission):
        self._admission: Admission | None = admission

    def release(self) -> None:
        admission, self._admission = self._admission, None
        if admission is not None:
            admission.held -= 1

    @property
    def held(self) -> bool:
        return self._admission is not None


class Admission:
    """The count of connections a process holds, against its cap (``limit``; 0: no cap).

    Called only from the process's event loop (consumers and async views), so the count needs no
    lock: ``admit`` checks and takes in one step, with no await in between.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self.refused = 0  # connections turned away since start (for operators and tests)

    def admit(self) -> Slot:
        """Take a slot for a connection, or raise ``Full`` when the process holds its cap already."""
        if self.limit and self.held >= self.limit:
            self.refused += 1
            raise Full(self.limit)
        self.held += 1
        return Slot(self)


_process: Admission | None = None


def connections() -> Admission:
    """This process's admission count, made from ``TICKER_MAX_CONNECTIONS`` on first use."""
    global _process
    if _process is None:
        _process = Admission(settings.TICKER_MAX_CONNECTIONS)
    return _process
