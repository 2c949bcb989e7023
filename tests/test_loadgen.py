"""The fan-out load generator's own logic: frame parsing, what it counts, how losses are found."""

import json
import zlib

import pytest

from bench.codec import client_frame, take_frame
from bench.fanout import lost_by_steps, ratios
from bench.loadgen import SUBSCRIBE_ALL, LeanClient, Target, Worker


def server_frame(payload: bytes, opcode: int = 0x1, *, compressed: bool = False) -> bytes:
    """A server frame; ``compressed``: the payload deflated as the site sends it (RFC 7692, RSV1 set)."""
    if compressed:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    first = 0x80 | opcode | (0x40 if compressed else 0)
    n = len(payload)
    header = bytes([first, n]) if n < 126 else bytes([first, 126]) + n.to_bytes(2, "big")
    return header + payload


def quotes(step: int, seq: int, ts: int) -> bytes:
    frame = {"type": "quotes", "step": step, "quotes": [{"symbol": "ACME", "price": 1.5, "seq": seq, "ts": ts}]}
    return json.dumps(frame, separators=(",", ":")).encode()


class RecordingTransport:
    """Stands in for the socket: what the client wrote."""

    def __init__(self):
        self.written = []

    def write(self, data):
        self.written.append(data)

    def close(self):
        pass


def feed(client: LeanClient, data: bytes, cut: int) -> None:
    """Deliver ``data`` in reads of ``cut`` bytes, as the event loop would."""
    at = 0
    while at < len(data):
        view = client.get_buffer(-1)
        n = min(len(view), cut, len(data) - at)  # a read never fills more than the buffer offered
        view[:n] = data[at : at + n]
        client.buffer_updated(n)
        at += n


def test_client_frames_are_masked_and_read_back_whole():
    """What the generator sends is a valid masked client frame (RFC 6455 5.3), with every length encoding."""
    for payload in (b"", b"3", b'{"action":"subscribe","symbols":["*"]}', b"x" * 300, bytes(range(256)) * 300):
        assert take_frame(bytearray(client_frame(payload))) == (1, payload)


@pytest.mark.asyncio
async def test_quotes_frames_split_anywhere_are_counted_once_with_step_and_latency():
    """Frames cut at any byte still count once each; heartbeats and snapshots do not count; pings are answered."""
    worker = Worker(pipe=None)
    for cut in (1, 7, 100, 10_000):
        client = LeanClient(worker, Target("h", 1, "/ws/quotes/"), sampled=True)
        client.transport = RecordingTransport()
        worker.counting, worker.frames, worker.latencies_ms = True, 0, []
        stream = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        stream += server_frame(b'{"type":"snapshot","step":1,"quotes":[]}')
        stream += server_frame(b'{"type":"heartbeat","feed":"live","step":1,"ts":1}')
        stream += server_frame(quotes(2, 5, 1_000))
        stream += server_frame(b"are you there", opcode=0x9)
        stream += server_frame(quotes(3, 7, 2_000) + b" " * 200)  # a 2-byte length header
        feed(client, stream, cut)
        assert client.ready.done() and client.steps == [2, 3]
        assert worker.frames == 2 and len(worker.latencies_ms) == 2
        # Latency is arrival time minus the market's ts: the frame stamped 1 s earlier waited 1 s longer.
        assert abs(worker.latencies_ms[0] - worker.latencies_ms[1] - 1_000) < 100
        assert client.transport.written[0] == SUBSCRIBE_ALL  # a ticker client follows every symbol
        pong = [w for w in client.transport.written if w[0] == 0x8A]
        assert len(pong) == 1 and take_frame(bytearray(pong[0])) == (0xA, b"are you there")
        assert client.seq_gaps() == (1, 1)  # ACME went from seq 5 to 7: one update missing


@pytest.mark.asyncio
async def test_compressed_frames_are_only_counted_unless_the_client_is_sampled_then_inflated_after_the_window():
    """permessage-deflate: RSV1 frames count as frames; a sampled client reads them after the window."""
    worker = Worker(pipe=None)
    target = Target("h", 1, "/ws/quotes/", deflate=True)
    sampled, other = (LeanClient(worker, target, sampled=s) for s in (True, False))
    worker.clients = [sampled, other]
    head = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Extensions: permessage-deflate;"
        b" client_no_context_takeover; server_no_context_takeover\r\n\r\n"
    )
    for client in (sampled, other):
        client.transport = RecordingTransport()
        client.connection_made(client.transport)
        feed(client, head, 10_000)
        assert client.deflated
    offer = client.transport.written[0]
    assert b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" in offer
    await worker.start()
    pad = b" " * 300  # the site compresses frames of 256 bytes and more
    stream = server_frame(b'{"type":"snapshot","step":1,"quotes":[]}' + pad, compressed=True)  # a resnapshot
    stream += server_frame(quotes(2, 5, 1_000) + pad, compressed=True)
    stream += server_frame(b'{"type":"heartbeat","feed":"live","step":2,"ts":1}')  # small: not compressed
    stream += server_frame(quotes(3, 6, 2_000) + pad)  # sent uncompressed (past the per-step budget)
    stream += server_frame(quotes(4, 8, 3_000) + pad, compressed=True)
    for client in (sampled, other):
        feed(client, stream, 13)
    assert worker.frames == 8 and worker.compressed == 6  # every RSV1 frame, nothing inflated yet
    assert sampled.steps == other.steps == [3] and len(worker.latencies_ms) == 2
    figures = await worker.stop()
    # The sampled client's snapshot is found out and taken back; its quotes frames give latency, steps, seqs.
    assert figures["frames"] == 7 and figures["compressed"] == 5
    assert sampled.steps == [2, 3, 4] and other.steps == [3]
    assert figures["client_frames"] == [3, 4] and figures["deflated_clients"] == 2
    assert len(figures["latencies_ms"]) == 2 + 2
    assert (figures["sampled_updates"], figures["sampled_missing"]) == (2, 1)  # ACME 5, 6, then 8: one missing


def test_losses_are_the_steps_a_client_missed_between_two_it_received():
    """A step others got, missing between two a client received, is lost; before its first or after its last, late."""
    assert lost_by_steps([[1, 2, 3, 4], [1, 2, 3, 4]]) == 0
    assert lost_by_steps([[1, 2, 3, 4], [1, 3, 4]]) == 1
    assert lost_by_steps([[1, 2, 3, 4, 5, 6], [1, 3, 6]]) == 3
    # Window edges and stalls: frames still on their way are not counted as lost.
    assert lost_by_steps([[2, 3, 4, 5], [1, 2, 3, 4]]) == 0
    assert lost_by_steps([[1, 2, 3, 4, 5, 6], [1, 2]]) == 0
    assert lost_by_steps([[1, 2, 3], []]) == 0  # silent: reported apart (silent_clients)


@pytest.mark.asyncio
async def test_a_frame_larger_than_the_read_buffer_is_read_whole():
    """A 100 KB frame (8-byte length) arriving in pieces grows the client's buffer and still counts once."""
    worker = Worker(pipe=None)
    worker.counting = True
    client = LeanClient(worker, Target("h", 1, "/", dialect="plain"), sampled=True)
    client.transport = RecordingTransport()
    big = quotes(7, 1, 1_000)[:-1] + b"," + b'"pad":"' + b"x" * 100_000 + b'"}'
    frame = bytes([0x81, 127]) + len(big).to_bytes(8, "big") + big
    feed(client, b"HTTP/1.1 101 Switching Protocols\r\n\r\n" + frame + server_frame(quotes(8, 2, 1_000)), 4096)
    assert client.steps == [7, 8] and worker.frames == 2
    assert client.kept[0] == big


def test_ratios_compare_the_site_with_every_reference_at_the_chosen_step():
    """Each reference gets one line at the chosen step, with issue 5's targets named; unmeasurable figures none."""

    def row(server, label, clients, us):
        return {"server": server, "label": label, "processes": 1, "clients": clients, "server_cpu_us_per_frame": us}

    rows = [
        row("ticker", "ticker", 1000, 20.0),
        row("ticker", "ticker", 2000, 16.0),
        row("daphne-floor", "bare ASGI on daphne", 2000, 64.0),
        row("socketio", "python-socketio", 2000, 96.0),
        row("socketio", "python-socketio", 3000, 120.0),
        row("websockets", "bare websockets", 2000, 0.0),
    ]
    assert ratios(rows, at=2000) == [
        "ticker / bare ASGI on daphne at 2000 vs 2000 clients: 0.25x (16.0 vs 64.0 us/frame) (issue 5: at most 1.5x)",
        "ticker / python-socketio at 2000 vs 2000 clients: 0.17x (16.0 vs 96.0 us/frame) (issue 5: below 1x)",
    ]


def test_each_client_subscribes_to_its_own_watchlist_drawn_the_same_way_every_run():
    """--watchlist K: K distinct symbols of the universe per client, a different draw per client, repeatable."""
    from bench.codec import take_frame

    universe = tuple(f"S{i:03d}" for i in range(50))
    target = Target("h", 1, "/ws/quotes/", symbols=universe, watchlist=5)

    def symbols(client: int) -> list[str]:
        opcode, payload = take_frame(bytearray(target.subscribe(client)))
        message = json.loads(payload)
        assert opcode == 1 and message["action"] == "subscribe"
        return message["symbols"]

    assert len(set(symbols(0))) == 5 and set(symbols(0)) <= set(universe)
    assert symbols(0) == symbols(0) and symbols(0) != symbols(1)
    assert take_frame(bytearray(Target("h", 1, "/", symbols=("AAA", "BBB")).subscribe(7)))[1] == (
        b'{"action": "subscribe", "symbols": ["AAA", "BBB"]}'
    )
    assert Target("h", 1, "/").subscribe(3) == SUBSCRIBE_ALL


def test_the_personal_watchlist_ratio_is_taken_against_the_broadcast_of_the_same_run():
    def row(server, clients, us):
        return {"server": server, "label": server, "processes": 1, "clients": clients, "server_cpu_us_per_frame": us}

    lines = ratios([row("ticker", 2000, 20.0), row("ticker-personal", 2000, 26.0)], at=2000)
    assert lines == [
        "personal watchlists / broadcast (ticker-personal / ticker) at 2000 vs 2000 clients: 1.30x "
        "(26.0 vs 20.0 us/frame) (issue 11: at most 1.5x)"
    ]


def test_compression_ramps_the_site_off_then_on_or_in_the_order_asked():
    """--compression: NAME and NAME-deflate rows, off first by default (both), or on,off for the other order."""
    from bench.fanout import Workload, deflated, workloads

    site = Workload("ticker", "ticker")
    assert [(w.name, w.deflate) for w in deflated(site, "both")] == [("ticker", False), ("ticker-deflate", True)]
    assert [w.name for w in deflated(site, "on,off")] == ["ticker-deflate", "ticker"]
    assert [w.name for w in deflated(site, "off")] == ["ticker"]
    loads = workloads(("A",), ("A", "B", "C"), 2, "on")
    assert [(w.name, w.watchlist, w.deflate) for w in loads] == [
        ("ticker-deflate", 0, True),
        ("ticker-personal-deflate", 2, True),
    ]
    assert loads[1].label == "ticker, each client its own 2 of 3 symbols, permessage-deflate"


def test_the_compression_ratio_is_taken_between_the_same_workload_off_and_on():
    def row(server, us):
        return {"server": server, "label": server, "processes": 1, "clients": 2000, "server_cpu_us_per_frame": us}

    lines = ratios([row("ticker", 20.0), row("ticker-deflate", 22.0), row("ticker-personal-deflate", 30.0)], at=2000)
    assert lines == [
        "compression on / off (ticker-deflate / ticker) at 2000 vs 2000 clients: 1.10x (22.0 vs 20.0 us/frame) "
        "(issue 14: at most 1.2x)"
    ]
