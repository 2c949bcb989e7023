"""Quiet, useful logs (issue 20): expected refusals and repeated warnings once per kind per window, with a count."""

from __future__ import annotations

import logging

from ticker.ops.logs import RepeatFilter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(name: str, level: int, msg: str, *args, status: int | None = None, exc=None) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, msg, args, exc)
    if status is not None:
        made.status_code = status
    return made


def test_a_flood_of_refusals_is_one_line_per_window_and_the_next_one_counts_the_rest():
    """1,000 503s in a window: one WARNING (not ERROR) line; the first after the window says 999 were left out."""
    clock = Clock()
    repeats = RepeatFilter(window_s=30, clock=clock)
    kept = [
        r
        for i in range(1000)
        if repeats.filter(r := record("django.request", logging.ERROR, "Service Unavailable: %s", f"/p{i}", status=503))
    ]
    assert len(kept) == 1 and kept[0].levelname == "WARNING"
    clock.now += 30
    later = record("django.request", logging.ERROR, "Service Unavailable: %s", "/x", status=503)
    assert repeats.filter(later)
    assert later.getMessage() == "Service Unavailable: /x [999 more like this in the last 30 s]"
    assert later.repeats == 999


def test_kinds_are_counted_apart_and_info_is_never_held_back():
    """A 400 does not hide a 404 or another logger's warning; INFO lines (a connection's open/close) all pass."""
    repeats = RepeatFilter(window_s=30, clock=Clock())
    assert repeats.filter(record("django.request", logging.WARNING, "Bad Request: %s", "/a", status=400))
    assert not repeats.filter(record("django.request", logging.WARNING, "Bad Request: %s", "/b", status=400))
    assert repeats.filter(record("django.request", logging.WARNING, "Not Found: %s", "/c", status=404))
    assert repeats.filter(record("ticker.hub.follower", logging.WARNING, "Redis is away"))
    assert not repeats.filter(record("ticker.hub.follower", logging.WARNING, "Redis is away"))
    assert all(repeats.filter(record("ticker.edge.consumers", logging.INFO, "websocket opened")) for _ in range(50))


def test_real_faults_are_never_held_back():
    """A 500, a traceback or a CRITICAL record is logged every time: each may be a different fault."""
    repeats = RepeatFilter(window_s=30, clock=Clock())
    for _ in range(3):
        assert repeats.filter(record("django.request", logging.ERROR, "Internal Server Error: %s", "/", status=500))
        assert repeats.filter(record("ticker.hub", logging.ERROR, "boom", exc=(ValueError, ValueError("x"), None)))
        assert repeats.filter(record("ticker.market.loop", logging.CRITICAL, "lost the lease"))


def test_what_the_filter_remembers_is_bounded():
    """Messages with ever-new templates (never the case for the site's own) cannot grow the filter without end."""
    clock = Clock()
    repeats = RepeatFilter(window_s=30, clock=clock)
    for step in (0.1, 0.0):
        for i in range(5000):
            clock.now += step
            repeats.filter(record("x", logging.WARNING, f"message {step} {i}"))
        assert len(repeats._kinds) <= 1000


def test_audit_lines_are_never_held_back():
    """Every lockout django-axes logs, and every Django security warning, is kept: each names a user or address."""
    repeats = RepeatFilter(window_s=30, clock=Clock())
    for i in range(5):
        assert repeats.filter(record("axes.handlers.database", logging.WARNING, "AXES: Locking out %s", f"u{i}"))
        assert repeats.filter(record("django.security.DisallowedHost", logging.ERROR, "Invalid HTTP_HOST %s", "x"))


def test_a_flood_of_refused_requests_is_one_access_line_per_status_per_window():
    """Access lines of 503 and 4xx answers are summarised like the warnings; 200s and 500s each get their line."""
    repeats = RepeatFilter(window_s=30, clock=Clock())

    def access(status: int) -> logging.LogRecord:
        made = record("ticker.access", logging.INFO, '%s "%s %s" %s %s', "c", "GET", "/api/quotes/stream/", status, 0)
        made.status = status
        return made

    assert [repeats.filter(access(503)) for _ in range(100)].count(True) == 1
    assert [repeats.filter(access(429)) for _ in range(100)].count(True) == 1
    assert all(repeats.filter(access(200)) for _ in range(100))
    assert all(repeats.filter(access(500)) for _ in range(3))
