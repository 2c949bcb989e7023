"""Prometheus metrics: each web process's at /metrics (ticker.ops.health), the market's on its own port.

Names are prefixed ``ticker_`` and listed, with their meaning, in docs/operations.md.

The per-frame path is hot (docs/benchmarks.md: ~16 µs of server CPU per frame), so nothing here is touched
once per frame: the fan-out keeps plain integers (ticker/hub/sent.py) and adds a step's frames in one go, and the
collector below turns them into Prometheus samples only when /metrics is read. prometheus_client's own
objects (with their locks) are used for what happens once per step, per connection or per close.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# One registry per kind of process, so the market's port lists no web figures and /metrics no market ones.
WEB = CollectorRegistry(auto_describe=True)
MARKET = CollectorRegistry(auto_describe=True)
for _registry in (WEB, MARKET):
    ProcessCollector(registry=_registry)  # process_resident_memory_bytes, process_cpu_seconds_total, ...
    PlatformCollector(registry=_registry)
    GCCollector(registry=_registry)

# Fan-out of a step takes ~16 µs per frame: 1 ms at 60 clients, 30 ms at 2,000 (docs/benchmarks.md).
FANOUT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
TRANSPORTS = ("websocket", "sse", "long_poll")

# Open connections by transport, as plain integers (the operations report reads them too).
open_connections: dict[str, int] = dict.fromkeys(TRANSPORTS, 0)
connections = Gauge("ticker_connections", "Open connections by transport.", ["transport"], registry=WEB)
for _transport in TRANSPORTS:
    connections.labels(_transport).set_function(lambda transport=_transport: open_connections[transport])
closes = Counter("ticker_closes", "WebSocket connections closed, by close code.", ["code"], registry=WEB)
refused_messages = Counter(
    "ticker_refused_messages",
    "Client messages refused by a limit (each also closes its connection), by reason.",
    ["reason"],
    registry=WEB,
)
for _reason in ("rate_limited", "too_large", "too_fragmented"):
    refused_messages.labels(_reason)
# Connections turned away by admission control (ticker/edge/admission.py): the process's cap, or one address's share of
# it (issue 21). Both labels take only these values, whatever a client sends.
REFUSAL_REASONS = ("server_full", "address_full")
refused_connections = Counter(
    "ticker_refused_connections",
    "Connections refused by admission control (WebSocket closed 1013, SSE and long-poll 503), by transport and reason.",
    ["transport", "reason"],
    registry=WEB,
)
for _transport in TRANSPORTS:
    for _reason in REFUSAL_REASONS:
        refused_connections.labels(_transport, _reason)
# Compression (ticker/wire/frames.py): counted once per distinct frame compressed, not per connection it went to.
compressed_frames = Counter(
    "ticker_compressed_frames",
    "Distinct frames compressed for permessage-deflate (each once, for every connection it went to).",
    registry=WEB,
)
compressed_bytes = Counter(
    "ticker_compressed_bytes",
    "Bytes of the distinct frames compressed: before (form=raw) and after (form=deflated).",
    ["form"],
    registry=WEB,
)
negotiated = Counter(
    "ticker_websocket_negotiated",
    "WebSocket connections accepted, by what they negotiated: compression (shared: frames compressed once "
    "for all; per_connection: by autobahn; none; server: up to a server other than daphne) and quote format "
    "(delta: ticker.v2.json; whole).",
    ["compression", "format"],
    registry=WEB,
)
fanout_seconds = Histogram(
    "ticker_fanout_seconds", "Time to hand one market step to every connection.", buckets=FANOUT_BUCKETS, registry=WEB
)
feed_lag_seconds = Histogram(
    "ticker_feed_lag_seconds",
    "From the market's publish time (the batch's ts) to this process's receipt of the batch.",
    buckets=LAG_BUCKETS,
    registry=WEB,
)

market_step_seconds = Histogram(
    "ticker_market_step_seconds",
    "Time of one market step: prices moved and stored.",
    buckets=STEP_BUCKETS,
    registry=MARKET,
)
market_steps = Counter("ticker_market_steps", "Market steps stored.", registry=MARKET)
market_step_failures = Counter(
    "ticker_market_step_failures", "Market steps that could not be stored (the market reloads).", registry=MARKET
)
market_publish_failures = Counter(
    "ticker_market_publish_failures",
    "Steps whose batch could not be sent to the channel layer (kept for the next one).",
    registry=MARKET,
)
market_symbols = Gauge("ticker_market_symbols", "Symbols listed.", registry=MARKET)
market_step = Gauge("ticker_market_step", "The last stored step's number.", registry=MARKET)
market_last_publish = Gauge(
    "ticker_market_last_publish_timestamp_seconds", "Unix time of the last batch sent.", registry=MARKET
)
# Price alerts (issue 23; ticker/market/alerts.py): evaluated in every step, fires stored with it.
ALERT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
alerts_armed = Gauge("ticker_alerts_armed", "Armed alerts the market holds (its alert book).", registry=MARKET)
alerts_fired = Counter("ticker_alerts_fired", "Alerts fired (stored with their step).", registry=MARKET)
alert_evaluation_seconds = Histogram(
    "ticker_alert_evaluation_seconds",
    "One step's alert work: read, find, store.",
    buckets=ALERT_BUCKETS,
    registry=MARKET,
)
alert_delivery_failures = Counter(
    "ticker_alert_delivery_failures",
    "Steps whose fires could not be sent to the channel layer (they are stored: listed on the next page load).",
    registry=MARKET,
)


def connection_opened(transport: str) -> None:
    open_connections[transport] += 1


def connection_closed(transport: str) -> None:
    open_connections[transport] -= 1


# The close codes docs/protocol.md lists ("WebSocket close codes"), plus 1011 (a handler failed). Any other code,
# chosen by a client (RFC 6455 allows it 1000-4999), is counted as "other": a label value per code a client
# invents would let any client grow /metrics without bound (issue 20). "none": no code at all.
CLOSE_CODE_LABELS = frozenset(("1000", "1001", "1006", "1008", "1009", "1011", "1013", "4000"))


def close_code_label(code: int | None) -> str:
    """The ``code`` label of ticker_closes_total for a close code: a documented code, ``other`` or ``none``."""
    if code is None:
        return "none"
    return label if (label := str(code)) in CLOSE_CODE_LABELS else "other"


def websocket_closed(code: int | None) -> None:
    closes.labels(close_code_label(code)).inc()


_raw_bytes, _deflated_bytes = compressed_bytes.labels("raw"), compressed_bytes.labels("deflated")


def frame_compressed(raw: int, deflated: int) -> None:
    compressed_frames.inc()
    _raw_bytes.inc(raw)
    _deflated_bytes.inc(deflated)


def websocket_negotiated(compression: str, delta: bool) -> None:
    negotiated.labels(compression, "delta" if delta else "whole").inc()


def connection_refused(transport: str, reason: str) -> None:
    refused_connections.labels(transport, reason).inc()


def message_refused(reason: str) -> None:
    refused_messages.labels(reason).inc()


def batch_received(message: dict) -> None:
    """Called for every batch from the feed: how long after the market sent it (its ts, in ms) it arrived."""
    if (ts := message.get("ts")) is not None:
        feed_lag_seconds.observe(max(0.0, time.time() - ts / 1000))


def empty_hub_figures() -> dict:
    """The fan-out figures of a process with no hub yet; a hub's figures (ticker/hub/figures.py) start from these."""
    figures: dict = dict.fromkeys(("updates", "held_back", "resnapshotted", "behind", "symbols"), 0)
    subscriptions = dict.fromkeys(("all", "watchlist", "none"), 0)
    figures.update(p99=None, attached=0, frames={}, bytes={}, subscriptions=subscriptions, feed=None, step=None)
    return figures


# Who reads the hub's figures: set by the hub when it makes one (ticker.hub.figures.watch). Inverted so that this
# module, which every side imports, imports nothing of the hub.
_hub_figures: Callable[[], dict] = empty_hub_figures


def read_hub_figures_with(reader: Callable[[], dict]) -> None:
    """Called by the hub: ``reader`` returns this process's fan-out figures (its hubs together)."""
    global _hub_figures
    _hub_figures = reader


def hub_figures() -> dict:
    """This process's fan-out figures (its hubs together): for /metrics and the operations report."""
    return _hub_figures()


class HubCollector:
    """The hub's own figures, read when /metrics is scraped."""

    def collect(self) -> Iterator:
        figures = hub_figures()
        frames = CounterMetricFamily("ticker_frames_sent", "Frames handed to connections, by kind.", labels=["kind"])
        sent_bytes = CounterMetricFamily(
            "ticker_bytes_sent", "Payload bytes of those frames, by kind.", labels=["kind"]
        )
        for kind in sorted(figures["frames"]):
            frames.add_metric([kind], figures["frames"][kind])
            sent_bytes.add_metric([kind], figures["bytes"][kind])
        updates = CounterMetricFamily("ticker_updates_delivered", "Quote updates in the per-step frames sent.")
        updates.add_metric([], figures["updates"])
        slow = CounterMetricFamily(
            "ticker_slow_clients_events",
            "Connections found not reading (held_back), and those sent a fresh snapshot instead of a backlog "
            "(resnapshotted; after a feed outage every connection is).",
            labels=["event"],
        )
        slow.add_metric(["held_back"], figures["held_back"])
        slow.add_metric(["resnapshotted"], figures["resnapshotted"])
        behind = GaugeMetricFamily("ticker_slow_clients", "Connections held back now (not reading).")
        behind.add_metric([], figures["behind"])
        subscriptions = GaugeMetricFamily(
            "ticker_subscriptions",
            "Connections following the feed, by what they follow (all symbols, a watchlist, nothing yet).",
            labels=["kind"],
        )
        for kind, n in sorted(figures["subscriptions"].items()):
            subscriptions.add_metric([kind], n)
        symbols = GaugeMetricFamily("ticker_subscribed_symbols", "Symbols in all watchlists together.")
        symbols.add_metric([], figures["symbols"])
        live = GaugeMetricFamily("ticker_feed_live", "1 while batches arrive from the market, 0 otherwise.")
        live.add_metric([], figures["feed"] == "live")
        # Issue 20: an entry that outlives its connection is fed forever; this must fall to 0 with the connections.
        attached = GaugeMetricFamily(
            "ticker_fanout_entries", "Connections the fan-out writes to (WebSocket and SSE; 0 when none is open)."
        )
        attached.add_metric([], figures["attached"])
        yield from (frames, sent_bytes, updates, slow, behind, subscriptions, symbols, live, attached)
        if figures["step"] is not None:
            step = GaugeMetricFamily("ticker_feed_step", "The last market step this process holds.")
            step.add_metric([], figures["step"])
            yield step


WEB.register(HubCollector())


def exposition(registry: CollectorRegistry = WEB) -> bytes:
    return generate_latest(registry)


# -- the market -------------------------------------------------------------


class MarketFigures:
    """The market process's latest figures, for its operations report (ticker.ops.registry)."""

    def __init__(self) -> None:
        self.step = 0
        self.step_seconds: float | None = None
        self.symbols = 0
        self.last_publish: float | None = None
        self.publish_failures = 0
        self.alerts_armed = self.alerts_fired = self.alert_delivery_failures = 0
        self.alert_evaluation_seconds: float | None = None
        self.started = time.time()
        self.pid = os.getpid()


market = MarketFigures()


def market_stepped(seconds: float, step: int, symbols: int) -> None:
    """Called after every stored market step."""
    market_step_seconds.observe(seconds)
    market_steps.inc()
    market_step.set(step)
    market_symbols.set(symbols)
    market.step, market.step_seconds, market.symbols = step, seconds, symbols


def market_step_failed() -> None:
    market_step_failures.inc()


def market_published(ok: bool) -> None:
    """Called after every attempt to publish a step."""
    if ok:
        market.last_publish = time.time()
        market_last_publish.set(market.last_publish)
    else:
        market.publish_failures += 1
        market_publish_failures.inc()


def alerts_evaluated(seconds: float, *, fired: int, armed: int) -> None:
    """Called in every market step that evaluates alerts."""
    alert_evaluation_seconds.observe(seconds)
    alerts_fired.inc(fired)
    alerts_armed.set(armed)
    market.alert_evaluation_seconds, market.alerts_armed = seconds, armed
    market.alerts_fired += fired


def alerts_delivery_failed() -> None:
    market.alert_delivery_failures += 1
    alert_delivery_failures.inc()


def serve_market_metrics(port: int, address: str) -> None:
    """The market's /metrics on its own port, in a thread of its own (prometheus_client's server)."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=address, registry=MARKET)
