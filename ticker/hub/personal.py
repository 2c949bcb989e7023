"""Personal frames in one web process: each ``personal.events`` message routed to its users' open connections.

Every web process's hub holds one channel in the ``personal`` group (ticker/wire/personal.py), the same channel
that receives the quotes batches (ticker/hub/follower.py). For each ``[user, kind, JSON]`` event of a message
(encoded once, by its sender) the router looks the user up among this process's connections and writes the
frame to each of that user's outlets; a user with no connection here costs one dictionary look-up and nothing
else. Personal frames never pass through the fan-out: no interest, no rate cap, and nothing on the broadcast's
loop.

A step's alert fires come in its batch and ride with the step's quotes frames (``ride``, then ``flush``); other
events come in their own message (``route``).

A backlogged outlet (a client not reading) is skipped: the frame is dropped for it. Once it reads again it gets
a snapshot (the fan-out's rule), and the dashboard reloads ``GET /api/alerts/`` on every snapshot, so a missed
alert shows up in the list and the unread count (docs/protocol.md, "Personal frames").

On a ``signed_out`` frame the user's connections get it and are then forgotten here: they stay open, as
anonymous connections, for quotes only. One that names a session to spare (a password change made in it:
``personal.signed_out_message``, its ``sparing``) leaves that session's connections as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from ticker.hub.outlet import Outlet
from ticker.hub.sent import Sent
from ticker.wire.frames import Frame
from ticker.wire.personal import PERSONAL_EVENT

log = logging.getLogger(__name__)
SIGNED_OUT = "signed_out"


class PersonalRouter:
    """Which open connections of this process belong to which signed-in user, and their personal frames."""

    def __init__(self, step: Callable[[], int] = lambda: 0, sent: Sent | None = None):
        self.step = step  # the hub's current market step, stamped on the frames (their SSE id)
        # The fan-out's counts (the hub passes its own): personal frames show in ticker_frames_sent_total by
        # kind (alert, watchlist, signed_out), so deliveries are counted where the broadcasts are.
        self.sent = sent if sent is not None else Sent()
        self.users: dict[int, set[Outlet]] = {}
        self.owners: dict[Outlet, int] = {}
        self.sessions: dict[Outlet, str] = {}  # each connection's session tag, where it had one
        # Plain counts for tests and the operations view.
        self.delivered = 0
        self.dropped_backlogged = 0
        self.not_here = 0

    def __len__(self) -> int:
        return len(self.owners)

    def attach(self, outlet: Outlet, user_id: int | None, session: str | None = None) -> None:
        """Register a connection under its user (None: anonymous, never registered) and its session's tag."""
        if user_id is None:
            return
        self.detach(outlet)
        self.users.setdefault(user_id, set()).add(outlet)
        self.owners[outlet] = user_id
        if session is not None:
            self.sessions[outlet] = session

    def detach(self, outlet: Outlet) -> None:
        """The connection went (or its user signed out); safe to call twice."""
        user_id = self.owners.pop(outlet, None)
        self.sessions.pop(outlet, None)
        if user_id is None:
            return
        outlets = self.users.get(user_id)
        if outlets is not None:
            outlets.discard(outlet)
            if not outlets:
                del self.users[user_id]

    def owner(self, outlet: Outlet) -> int | None:
        """The user this connection is routed for now (None: anonymous, or signed out since it opened)."""
        return self.owners.get(outlet)

    def route(self, message: dict[str, Any]) -> None:
        """One ``personal.events`` message: each event to its user's connections here, or dropped at once."""
        if message.get("type") != PERSONAL_EVENT:
            return
        sparing = message.get("sparing")  # a session whose connections a signed_out leaves out
        for event in message.get("events", ()):
            try:
                self._deliver(*event, sparing=sparing)
            except Exception:  # one malformed event must not stop the others
                log.exception("could not route a personal event")

    def ride(self, events: list[dict[str, Any]], riders: dict[Outlet, list[Frame]]) -> None:
        """A batch's events (its step's alert fires): each frame put in ``riders`` under each of its user's outlets
        here, for the fan-out to write after that connection's quotes frame of the step, in the same socket write
        (``Outlet.write_all``); what the fan-out does not take, ``flush`` writes.

        Written out rather than through ``_reading``: at 2,000 fires a step this loop is the web process's whole
        per-fire cost besides the socket write (py-spy: the generic path was ~16% of a step's work)."""
        user_outlets, riding_of, step, written = self.users.get, riders.get, self.step(), {}
        for event in events:
            try:
                user_id, kind, text = event
                outlets = user_outlets(user_id)
                if not outlets:
                    self.not_here += 1
                    continue
                frame, taken = Frame(text, step, kind, compress=False), 0
                for outlet in outlets:
                    if outlet.backlogged:
                        self.dropped_backlogged += 1
                        continue
                    if (riding := riding_of(outlet)) is None:
                        riders[outlet] = [frame]
                    else:
                        riding.append(frame)
                    taken += 1
                if taken:
                    count, size = written.get(kind, (0, 0))
                    written[kind] = (count + taken, size + taken * len(frame.payload))
            except Exception:  # one malformed event must not stop the others
                log.exception("could not route a personal event")
        for kind, (count, size) in written.items():
            self.delivered += count
            self.sent.add_many(kind, count, size)

    def flush(self, riders: dict[Outlet, list[Frame]]) -> None:
        """Write what rode with no quotes frame of the step (a connection with none, or held by its rate cap)."""
        while riders:
            outlet, frames = riders.popitem()
            try:
                outlet.write_all(frames)
            except Exception:
                log.exception("writing a personal frame failed")

    def _deliver(self, user_id: int, kind: str, text: str, *, sparing: str | None = None) -> None:
        """One event; ``sparing``: a session whose connections a ``signed_out`` leaves out (a password change's)."""
        sparing = sparing if kind == SIGNED_OUT else None
        if (found := self._reading(user_id, kind, text, sparing)) is None:
            return
        outlets, encoded = found
        for outlet in outlets:
            try:
                outlet.write(encoded)
            except Exception:
                log.exception("writing a personal frame failed")
        if encoded.kind == SIGNED_OUT:
            for outlet in list(self._of(user_id, sparing)):  # a copy: detach changes the user's set
                self.detach(outlet)

    def _of(self, user_id: int, sparing: str | None) -> Iterable[Outlet]:
        """The user's outlets here (the set itself), or those not of the ``sparing`` session."""
        outlets = self.users.get(user_id, ())
        return outlets if sparing is None else [o for o in outlets if self.sessions.get(o) != sparing]

    def _reading(
        self, user_id: int, kind: str, text: str, sparing: str | None = None
    ) -> tuple[list[Outlet], Frame] | None:
        """The user's outlets here that are reading (but a spared session's), and the frame encoded once for them,
        counted as delivered (None: the user has no connection here). Personal frames go uncompressed: each is for
        one user, and compressing it would cost a compressor per frame for ~150 bytes."""
        outlets = self._of(user_id, sparing)
        if not outlets:
            self.not_here += 1
            return None
        encoded = Frame(text, self.step(), kind, compress=False)
        reading = []
        for outlet in outlets:
            if outlet.backlogged:
                self.dropped_backlogged += 1
            else:
                reading.append(outlet)
        self.delivered += len(reading)
        self.sent.add_many(kind, len(reading), len(reading) * len(encoded.payload))
        return reading, encoded
