"""Personal frames at scale (issue 23): one daphne process, N signed-in users on the broadcast, N alert fires a step.

Used by ``python manage.py bench_alerts`` (its second part). The rig (bench/rig.py: a fresh database, private Redis,
the site's own ``run_market``) gets N users and a session each, written in its database; the load generator
(bench/loadgen.py, pinned to core 1) opens N WebSockets on one daphne process (pinned to core 0), each handshake
carrying its user's ``sessionid`` cookie and the site's Origin, every client on all symbols. An armer (a thread
here, following the market's batches on the rig's Redis channel layer) writes, after every batch while it is on,
one real alert per user into the rig's database that any quote satisfies: the site's own market reads them into
its alert book, fires them in its next step's transaction and sends them in that step's batch, and the web
process writes each user's alert with that connection's quotes frame (the whole path a user's alert takes). Each
alert frame carries its step's ``ts``.

Measured windows alternate, on the same process and clients: ``off`` (the broadcast alone) and ``on`` (the
broadcast and the fires). Per window: the broadcast's server CPU per quotes frame (/proc), its latency, and for
``on`` every fire's latency (arrival minus ``ts``) and whether each user got each fire of every published step
exactly once (by step, after the publisher stopped and the last fires had time to arrive).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from .fanout import measure
from .loadgen import Target, Workers
from .proc import process_cpu_s, rss_kib, run_delay_s
from .rig import SITE, Rig
from .stats import latency_summary

# Run by ``manage.py shell -c`` on the rig's database: N users, a signed-in session each, written to a file.
_SIGN_IN = """
import json
from datetime import timedelta
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone
from django.utils.crypto import get_random_string
User = get_user_model()
users = User.objects.bulk_create([User(username=f"bench{i:05d}", password="!") for i in range(%(users)d)])
users = list(User.objects.filter(username__startswith="bench").order_by("pk"))
store, rows, pairs = SessionStore(), [], []
expires = timezone.now() + timedelta(days=1)
for user in users:
    key = get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789")
    data = {SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
            HASH_SESSION_KEY: user.get_session_auth_hash()}
    rows.append(Session(session_key=key, session_data=store.encode(data), expire_date=expires))
    pairs.append((user.pk, key))
Session.objects.bulk_create(rows)
open(%(path)r, "w").write(json.dumps(pairs))
"""


def sign_in(rig: Rig, users: int) -> tuple[tuple[int, str], ...]:
    """Create ``users`` users and a signed-in session each in the rig's database: ((user id, session key), ...)."""
    path = Path(rig.tmp.name) / "sessions.json"
    done = rig._manage("shell", "-c", _SIGN_IN % {"users": users, "path": str(path)})
    if done.returncode:
        last = (done.stdout + done.stderr).strip().splitlines() or ["no output"]
        raise RuntimeError(f"could not create {users} signed-in users in the benchmark's database: {last[-1]}")
    return tuple((int(pk), key) for pk, key in json.loads(path.read_text()))


# The alert's columns the armer writes, in its rows' order.
COLUMNS = (
    "id", "user_id", "stock_id", "condition", "value", "note", "state", "disabled", "armed_step", "created_at", "read",
)  # fmt: skip


class Armer:
    """Arms real alerts in the rig's database: while ``on``, after each market step, one alert for each of the
    next ``per_step`` users that any quote satisfies (``price_above`` 0.0001), so the market (the site's own
    ``run_market``, its alert book and its step transaction) fires them at its next step and they ride in that
    step's batch to the web process: the whole path, evaluation and storing included, as a user's alert takes it.

    It follows the market by the step its lease row records (read every 5 ms), not as a member of the quotes
    group: a member would make Redis write each step's message (~0.7 MB at 2,000 fires) once more than a web
    process alone costs, and would decode it on the load generator's side; and it inserts right after a step
    commits, between steps, rather than once the batch has crossed Redis, closer to the next step's start.

    Ids follow on from the highest in the table, one after another as a sequence hands them out (the book reads
    the ids above its watermark, and on PostgreSQL looks for a while for any it skipped); each alert's note names
    its user (``u<id>``), so a client tells its own user's alert from another's (``bench.loadgen``).
    """

    def __init__(self, rig: Rig, users: tuple[int, ...], per_step: int):
        from ticker.models import Alert, MarketLease, Stock

        self.users, self.db = users, rig.db
        self.table, self.stocks, self.lease = Alert._meta.db_table, Stock._meta.db_table, MarketLease._meta.db_table
        self.per_step = per_step  # alerts armed a step: the next ``per_step`` users in turn (all of them: each user)
        self.next = 0
        self.next_id = 0
        self.on = False
        self.first_id: int | None = None  # the window's first alert id
        self.wall_ms: list[float] = []  # each step's insert, as the API would store them
        self.errors: list[str] = []
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alerts-armer", daemon=True)
        self._thread.start()
        if not self.ready.wait(30):
            raise RuntimeError(f"the alerts armer could not read the market's step: {self.errors}")

    def _run(self) -> None:
        try:
            with self.db.connect() as db:
                [(stock,)] = db.read(f"SELECT id FROM {self.stocks} ORDER BY id LIMIT 1")  # noqa: S608
                [(top,)] = db.read(f"SELECT max(id) FROM {self.table}")  # noqa: S608
                self.next_id = (top or 0) + 1
                read = f"SELECT max(step) FROM {self.lease}"  # noqa: S608
                [(seen,)] = db.read(read)
                self.ready.set()
                while not self._stop.is_set():
                    [(step,)] = db.read(read)
                    if step == seen:
                        time.sleep(0.005)
                        continue
                    seen = step
                    if self.on:
                        self._arm(db, stock)
        except Exception as exc:  # the driver's errors, or a read that came back empty
            self.errors.append(repr(exc))

    def _arm(self, db, stock: int) -> None:
        users = [self.users[(self.next + i) % len(self.users)] for i in range(self.per_step)]
        self.next = (self.next + self.per_step) % len(self.users)
        first, self.next_id = self.next_id, self.next_id + len(users)
        if self.db.vendor == "sqlite":
            now, value, no, yes = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "0.0001", 0, 1
        else:
            now, value, no, yes = datetime.now(UTC), Decimal("0.0001"), False, True
        rows = [
            (first + i, user, stock, "price_above", value, f"u{user}", "armed", no, 0, now, yes)
            for i, user in enumerate(users)
        ]
        if self.first_id is None:
            self.first_id = first
        t0 = time.perf_counter()
        try:
            db.insert(self.table, COLUMNS, rows)
        except db.Error as exc:
            self.errors.append(repr(exc))
            return
        self.wall_ms.append((time.perf_counter() - t0) * 1000)

    def fired(self) -> dict[int, set[int]]:
        """The window's fires as the market stored them: each user's fired alert ids."""
        if self.first_id is None:
            return {}
        with self.db.connect() as db:
            rows = db.read(
                f"SELECT user_id, id FROM {self.table} WHERE id >= ? AND state = 'triggered'",  # noqa: S608
                [self.first_id],
            )
        by_user: dict[int, set[int]] = {}
        for user, pk in rows:
            by_user.setdefault(user, set()).add(pk)
        return by_user

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def exactly_once(taken: list[dict], fired: dict[int, set[int]], users: tuple[int, ...]) -> dict:
    """Each user's alert ids received against the ids the market fired for that user: missing, duplicated, or
    never fired (``fired``: user -> alert ids, as stored)."""
    got: dict[int, list[int]] = {}
    for worker in taken:
        for user, ids in worker["ids"]:
            got.setdefault(user, []).extend(ids)
    missing = duplicated = unexpected = 0
    for user in users:
        ids, wanted = got.get(user, []), fired.get(user, set())
        missing += len(wanted - set(ids))
        duplicated += len(ids) - len(set(ids))
        unexpected += len(set(ids) - wanted)
    return {
        "fires_published": sum(len(ids) for ids in fired.values()),
        "fires_received": sum(len(ids) for ids in got.values()),
        "fires_lost": missing,
        "fires_duplicated": duplicated,
        "fires_unexpected": unexpected,
        "fires_misrouted": sum(w["misrouted"] for w in taken),
    }


def by_position(taken: list[dict], ids: tuple[int, ...]) -> list[float | None]:
    """The alert p50 of each tenth of the users, in the order the message lists them (every user every step)."""
    place = {user: i * 10 // len(ids) for i, user in enumerate(ids)}
    tenths: list[list[float]] = [[] for _ in range(10)]
    for worker in taken:
        for user, latencies in worker["by_user"]:
            tenths[place[user]] += latencies
    return [latency_summary(t, (50,))["p50"] for t in tenths]


def by_step(taken: list[dict]) -> dict:
    """The fires grouped by the step that fired them: how many steps, and the three whose fires were latest
    (step, fires, p50, max): one late step (a pause in the market or the web process) against a spread tail."""
    steps: dict[int, list[float]] = {}
    for worker in taken:
        for step, latency in zip(worker["steps"], worker["latencies_ms"], strict=True):
            steps.setdefault(step, []).append(latency)
    worst = sorted(steps.items(), key=lambda item: -max(item[1]))[:3]
    return {
        "steps": len(steps),
        "steps_with_a_fire_over_100_ms": sum(max(v) > 100 for v in steps.values()),
        "latest": [
            {"step": step, "fires": len(v), **latency_summary(v, (50,)), "max": round(max(v), 1)} for step, v in worst
        ],
    }


def delivery(
    rig: Rig, users: int, *, per_step: int | None = None, rounds: int, seconds: float, settle: float, log
) -> list[dict]:
    """``users`` signed-in clients on one pinned daphne; ``rounds`` pairs of windows, off then on; one row each."""
    pairs = sign_in(rig, users)
    log(f"  {len(pairs)} users signed in (a session each in the rig's database)")
    process, port = rig.start(SITE, cpu=0)
    workers = Workers(1, cpu=1)
    publisher = None
    rows: list[dict] = []
    try:
        time.sleep(settle)
        idle = rss_kib(process.pid)
        target = Target("127.0.0.1", port, SITE.path, SITE.dialect, users=pairs)
        outcome = workers.connect(target, users, sample_every=20)
        if outcome["errors"]:
            log(f"  {len(outcome['errors'])} connects failed, e.g. {outcome['errors'][0]}")
        ids = tuple(pk for pk, _ in pairs)
        publisher = Armer(rig, ids, per_step or users)
        time.sleep(settle)
        for _ in range(rounds):
            for personal in (False, True):
                args = (workers, process.pid, publisher, ids, personal, outcome, idle)
                rows.append(_window(*args, seconds=seconds, settle=settle, log=log))
    finally:
        if publisher is not None:
            publisher.close()
        workers.shutdown()
        rig.stop(process)
    return rows


def _window(workers, pid, publisher, ids, personal: bool, outcome, idle, *, seconds: float, settle: float, log) -> dict:
    workers.take_alerts()  # nothing before the window
    publisher.first_id, publisher.wall_ms = None, []
    publisher.on = personal
    generator = workers.processes[0].pid
    cpu0, waited0, wall0 = process_cpu_s(pid), run_delay_s(pid), time.monotonic()
    generator_waited0 = run_delay_s(generator)
    row = measure(workers, [pid], seconds, clients=outcome["connected"], idle_rss_kib=idle)
    publisher.on = False
    cpu, waited = process_cpu_s(pid) - cpu0, run_delay_s(pid) - waited0
    generator_waited = run_delay_s(generator) - generator_waited0
    elapsed = time.monotonic() - wall0
    time.sleep(1.0 + (settle if personal else 0))  # the last fires on their way; then any backlog drains
    taken = workers.take_alerts()
    fires = exactly_once(taken, publisher.fired(), ids) if personal else None
    by_place = by_position(taken, ids) if personal and publisher.per_step == len(ids) else None
    latencies = [x for t in taken for x in t["latencies_ms"]]
    row = {
        "server": "ticker-alerts" if personal else "ticker-broadcast",
        "label": f"{len(ids)} signed-in users, broadcast"
        + (f" + {publisher.per_step} alerts a step" if personal else ""),
        "alerts_per_step": publisher.per_step if personal else 0,
        "processes": 1,
        "personal": personal,
        **row,
        "alert_latency_ms": latency_summary(latencies, (50, 99, 100)) if personal else None,
        # p50 of the fires by their place in the step's message (tenths: the first 10% of events, ...): how
        # much of the latency is the web process routing the message one event after another.
        "alert_p50_ms_by_tenth": by_place,
        "alert_steps": by_step(taken) if personal else None,
        "alerts": fires,
        # Runnable but kept off its core by other processes (a shared machine): the share of the window.
        "server_runqueue_wait_share": round(waited / elapsed, 3),
        "generator_runqueue_wait_share": round(generator_waited / elapsed, 3),
        # The armer's insert of the next alerts a step (named "publisher" in earlier runs' JSON, kept for them).
        "publisher_ms_per_step": round(statistics.median(publisher.wall_ms), 2) if publisher.wall_ms else None,
        "armer_errors": publisher.errors[-3:],  # a read or insert that failed: the window armed less, or stopped
        "publisher_ms_max": round(max(publisher.wall_ms), 2) if publisher.wall_ms else None,
        "server_cpu_us_per_any_frame": round(cpu * 1e6 / (row["frames_per_s"] * seconds + len(latencies)), 1)
        if row["frames_per_s"]
        else None,
    }
    log(summary(row))
    return row


def summary(row: dict) -> str:
    lat = row["latency_ms"]
    line = (
        f"  {row['server']:>16} {row['clients']} clients: broadcast {row['server_cpu_us_per_frame']} us/frame, "
        f"p50 {lat['p50']} p99 {lat['p99']} ms, lost {row['lost_frames']}+{row['lost_updates_sampled']}, "
        f"generator {row['generator_cpu_us_per_frame']} us/frame, server CPU {row['server_cpu_share']} of a core, "
        f"runnable but waiting {row['server_runqueue_wait_share']} (generator {row['generator_runqueue_wait_share']})"
    )
    if row["personal"]:
        alat, fires = row["alert_latency_ms"], row["alerts"]
        line += (
            f"; alerts p50 {alat['p50']} p99 {alat['p99']} max {alat['max']} ms, {fires['fires_received']} of "
            f"{fires['fires_published']} received, lost {fires['fires_lost']}, duplicated "
            f"{fires['fires_duplicated']}, misrouted {fires['fires_misrouted']}, armer's insert "
            f"{row['publisher_ms_per_step']} ms/step (max {row['publisher_ms_max']})"
        )
        if row["alert_p50_ms_by_tenth"]:
            line += f"; p50 by tenth of the message {row['alert_p50_ms_by_tenth']}"
        if steps := row.get("alert_steps"):
            latest = ", ".join(f"{w['step']}: p50 {w['p50']} max {w['max']}" for w in steps["latest"])
            line += f"; {steps['steps_with_a_fire_over_100_ms']} of {steps['steps']} steps had a fire over 100 ms "
            line += f"(latest steps {latest})"
    return line


def ratios(rows: list[dict]) -> list[str]:
    """The broadcast's server CPU per frame with the fires over without: each pair, and the medians."""
    off = [r["server_cpu_us_per_frame"] for r in rows if not r["personal"] and r["server_cpu_us_per_frame"]]
    on = [r["server_cpu_us_per_frame"] for r in rows if r["personal"] and r["server_cpu_us_per_frame"]]
    if not (off and on):
        return []
    each = ", ".join(f"{b / a:.2f}x" for a, b in zip(off, on, strict=False))
    p99 = [r["alert_latency_ms"]["p99"] for r in rows if r["personal"] and r["alert_latency_ms"]["p99"] is not None]
    lost = sum(r["alerts"]["fires_lost"] + r["alerts"]["fires_duplicated"] for r in rows if r["personal"])
    any_off = [r["server_cpu_us_per_any_frame"] for r in rows if not r["personal"] and r["server_cpu_us_per_any_frame"]]
    any_on = [r["server_cpu_us_per_any_frame"] for r in rows if r["personal"] and r["server_cpu_us_per_any_frame"]]
    per_any = (
        [
            f"server CPU per delivered frame (quotes + alerts), with alerts / without: "
            f"{statistics.median(any_on) / statistics.median(any_off):.2f}x by the medians "
            f"({statistics.median(any_on)} vs {statistics.median(any_off)} us/frame)"
        ]
        if any_on and any_off
        else []
    )
    return per_any + [
        f"broadcast server CPU per frame, with alerts / without: {statistics.median(on) / statistics.median(off):.2f}x "
        f"by the medians ({statistics.median(on)} vs {statistics.median(off)} us/frame; each pair {each}) "
        "(issue 23: within 10%)",
        f"alert delivery p99 median {statistics.median(p99) if p99 else None} ms (issue 23: at most 100 ms); "
        f"fires lost or duplicated: {lost}",
    ]


def window(row: dict) -> str:
    return f"with {row['alerts_per_step']:,} alerts a step" if row["personal"] else "broadcast only"


def markdown(config: dict, compared: list[dict], delivered: list[dict], lines: list[str]) -> str:
    """Both parts' tables and the ratio lines."""
    database = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[config.get("database", "sqlite")]
    out = [
        f"Machine: {config['machine']}. {config['date']}. Market step {config['market_interval_ms']} ms. "
        f"The rig's database: {database}.",
        "",
    ]
    if compared:
        out += [
            f"### Group per user vs one routed message ({config['fire_steps']} steps of each, alternating)",
            "",
            "| fires a step | way | publisher ms a step (median) | Redis round trips a step | delivery p50 ms "
            "| p99 ms | max ms | fires lost | steps not exactly once |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in compared:
            lat = r["latency_ms"]
            out.append(
                f"| {r['users']:,} | {r['way']} | {r['publisher_wall_ms']} | {r['round_trips_per_step']} | "
                f"{lat['p50']} | {lat['p99']} | {lat['max']} | {r['fires_lost']} | {r['steps_not_exactly_once']} |"
            )
        out.append("")
    if delivered:
        out += [
            "### Delivery at scale: one daphne process (core 0), load generator (core 1), windows alternating",
            "",
            "| window | clients | broadcast server µs/frame | server µs/frame (quotes + alerts) | quotes p50 / p99 ms "
            "| alerts p50 / p99 / max ms | fires received / published | lost | duplicated | misrouted "
            "| armer insert ms/step | generator µs/frame | quotes lost |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in delivered:
            lat, alat, fires = r["latency_ms"], r["alert_latency_ms"], r["alerts"]
            personal = (
                f"{alat['p50']} / {alat['p99']} / {alat['max']} | {fires['fires_received']:,} / "
                f"{fires['fires_published']:,} | {fires['fires_lost']} | {fires['fires_duplicated']} | "
                f"{fires['fires_misrouted']} | {r['publisher_ms_per_step']}"
                if r["personal"]
                else "– | – | – | – | – | –"
            )
            out.append(
                f"| {window(r)} | "
                f"{r['clients']:,} | "
                f"{r['server_cpu_us_per_frame']} | {r['server_cpu_us_per_any_frame']} | {lat['p50']} / {lat['p99']} | "
                f"{personal} | {r['generator_cpu_us_per_frame']} | {r['lost_frames']}+{r['lost_updates_sampled']} |"
            )
        out.append("")
    out += [f"- {line}" for line in lines]
    return "\n".join(out) + "\n"
