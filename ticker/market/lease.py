"""The market lease: exactly one market process steps, any other waits as a hot standby.

The lease is one database row (``models.MarketLease``): the holder, a fencing
token that only grows, and an expiry. A market takes it with one conditional
UPDATE (expired, or already its own) that adds one to the token, and renews it
inside every step's own transaction with ``UPDATE ... WHERE holder = me AND
token = mine`` (``renew``, called first thing by ``services.market_step``). If
that touches no row, someone else took the lease: the step raises
``LeaseLost``, its transaction is rolled back, and nothing it computed is
stored or published.

So safety never depends on clocks. The expiry is wall-clock epoch
milliseconds of whichever process writes or reads it, and clocks decide only
when a standby may take over (liveness): a standby whose clock runs ahead
takes over early, and the leader's next step is then refused; one whose clock
runs behind takes over late. The renewal also locks the row for the rest of
the step (PostgreSQL row lock; SQLite's IMMEDIATE transactions lock the whole
database), so a takeover waits for a step in flight and then sees its renewal.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q

from ticker.models import MarketLease

ONE = MarketLease.ONE


class Lease(NamedTuple):
    """The lease as one market holds it: who, and with which fencing token."""

    holder: str
    token: int


class MarketIdentity(NamedTuple):
    """Which market a batch comes from: the site (one per database) and the leader's fencing token."""

    site: str
    token: int


class LeaseLost(Exception):
    """This market no longer holds the lease: another took it over; the step was not stored."""

    def __init__(self, lease: Lease, row: MarketLease | None):
        self.lease, self.row = lease, row
        now = "nobody" if row is None or not row.holder else f"{row.holder} (token {row.token})"
        super().__init__(f"the market lease (token {lease.token}) is now held by {now}")


def holder_id() -> str:
    """This process's name as a lease holder: host, pid and a random part (containers all run as pid 1)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _ttl_ms(ttl_s: float | None) -> int:
    return round((settings.MARKET_LEASE_TTL_S if ttl_s is None else ttl_s) * 1000)


def current() -> MarketLease:
    """The lease row, made (with a new random site id) the first time anyone asks."""
    row, _ = MarketLease.objects.get_or_create(pk=ONE)
    return row


def acquire(*, holder: str, ttl_s: float | None = None, now_ms: int | None = None) -> tuple[Lease | None, MarketLease]:
    """Take the lease if it expired (or is already ``holder``'s); return the lease or None, and the row as it is now.

    Called by a standby about five times a TTL. The read comes first, so a
    standby that sees a live leader takes no write lock; the take itself is one
    conditional UPDATE, so two standbys cannot both win.
    """
    now = _now_ms() if now_ms is None else now_ms
    row = current()
    if row.expires_at >= now and row.holder != holder:
        return None, row
    with transaction.atomic():
        _bound_idle(ttl_s)
        taken = (
            MarketLease.objects.filter(pk=ONE)
            .filter(Q(expires_at__lt=now) | Q(holder=holder))
            .update(holder=holder, token=F("token") + 1, expires_at=now + _ttl_ms(ttl_s))
        )
        row = MarketLease.objects.get(pk=ONE)
    return (Lease(holder, row.token) if taken else None), row


def renew(lease: Lease, *, step: int, ttl_s: float | None = None) -> None:
    """Extend the lease for one more TTL, inside the step's transaction; raise LeaseLost if it is not ours.

    Also records ``step`` (the step being stored), so a takeover continues the
    step count even after quiet steps that changed no stock.
    """
    _bound_idle(ttl_s)
    renewed = MarketLease.objects.filter(pk=ONE, holder=lease.holder, token=lease.token).update(
        expires_at=_now_ms() + _ttl_ms(ttl_s), step=step
    )
    if not renewed:
        raise LeaseLost(lease, MarketLease.objects.filter(pk=ONE).first())


def _bound_idle(ttl_s: float | None) -> None:
    """PostgreSQL: this transaction ends, and lets go of the lease row it locks, if its market goes quiet in it
    for a lease's length (``SET LOCAL idle_in_transaction_session_timeout``).

    A market cut off from the database between its renewal and its commit (issue 25, a partition) leaves the
    server holding the row lock of a session that will never speak again; the server notices a dead peer only
    through its TCP keepalives (two hours by default), and every takeover would wait on that lock meanwhile. A
    step quiet for a whole lease has lost its claim anyway: a standby may take over as soon as the renewal it made
    expires. SQLite needs none of this: its lock lives in the process that holds it.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('idle_in_transaction_session_timeout', %s, true)", [str(_ttl_ms(ttl_s))])


def still_ours(lease: Lease) -> bool:
    """Whether no other market has taken ``lease`` over (a read): a takeover writes its own holder and token."""
    return MarketLease.objects.filter(pk=ONE, holder=lease.holder, token=lease.token).exists()


def release(lease: Lease) -> bool:
    """Give the lease up (clean shutdown), so a standby takes over at its next poll; False if it was not ours."""
    return bool(MarketLease.objects.filter(pk=ONE, holder=lease.holder, token=lease.token).update(expires_at=0))


def identity() -> MarketIdentity:
    """This database's site id and the current leader's token: what a web process checks batches against."""
    row = current()
    return MarketIdentity(row.site, row.token)


def last_step() -> int:
    """The last step a lease holder stored (0 before any)."""
    return MarketLease.objects.filter(pk=ONE).values_list("step", flat=True).first() or 0
