"""Two independent clients, Python's ``websockets`` and Node's ``ws``, decode every frame of a 60 s run.

Both offer permessage-deflate and ask for the delta format (ticker.v2.json) on a real site (daphne,
run_market, redis-server), and follow every symbol at once, on the same frames: the server compresses each
shared frame once for every connection that negotiated compression (ticker/edge/server.py). Each client
(tests/interop/) keeps its own book of whole quotes from snapshots and deltas, in integer cents, and
reports what it saw; this test judges the two reports against each other and against /api/quotes/.
"""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from .clients import until
from .conftest import ROOT
from .interop.python_client import FIELDS, PythonClient
from .processes import running_site

pytestmark = [pytest.mark.processes, pytest.mark.once]

RUN_S = 60  # the Done-when: a 60 s run
STEPS_PER_S = 4  # MARKET_INTERVAL_MS 250
NODE_CLIENT = ROOT / "tests" / "interop" / "node_client.mjs"


def test_python_and_node_clients_decode_every_frame_of_a_minute_with_compression(tmp_path, redis_server):
    node_bin = shutil.which("node")
    assert node_bin, "node is not installed (scripts/system-deps installs nodejs)"
    assert (ROOT / "node_modules" / "ws" / "package.json").exists(), "ws is not installed: run scripts/bootstrap"

    with running_site(tmp_path, redis_server.url) as site:

        async def main() -> tuple[dict, dict, dict, int]:
            python = PythonClient(site.base)
            node = await asyncio.create_subprocess_exec(
                node_bin,
                str(NODE_CLIENT),
                "--url",
                site.base.replace("http", "ws", 1) + "/ws/quotes/",
                "--origin",
                site.base,
                # Its own limit, far past the run: it normally stops on the stop_at line below.
                "--seconds",
                str(RUN_S + 240),
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=64 * 2**20,  # the summary is one line of a few MB
            )
            following = asyncio.create_task(python.run())
            try:
                # 30 s: node and a Python client on a loaded 2-core machine; each gets its snapshot (of the
                # prices the site's database holds) before the market starts, so both see every step.
                ready = json.loads(await asyncio.wait_for(node.stdout.readline(), 30) or b"null")
                assert ready and ready["event"] == "ready", f"node client: {ready}, {await node.stderr.read()}"
                await asyncio.wait_for(python.ready.wait(), 30)
                start_step = site.get_json("/api/quotes/")["step"]
                market = site.start_market("--run-for", str(RUN_S), "--seed", "7")
                # The run itself; +60 s for the market process to start (seconds on a loaded machine) and stop.
                code = await asyncio.to_thread(market.wait, RUN_S + 60)
                assert code == 0, f"run_market exited with {code}"
                final = site.get_json("/api/quotes/")
                seqs = {q["symbol"]: q["seq"] for q in final["quotes"]}
                # The market has stopped, so the database's quotes are the last ones sent: each client comes to
                # hold every one of them (10 s: the last step's frame is milliseconds away, on a loaded machine).
                node.stdin.write(json.dumps({"stop_at": seqs}).encode() + b"\n")
                await node.stdin.drain()
                await until(
                    lambda: all(python.book.get(s, {}).get("seq", -1) >= seq for s, seq in seqs.items()),
                    limit=10,
                    what="the Python client to hold the final seq of every symbol",
                )
                line = await asyncio.wait_for(node.stdout.readline(), 10)
                assert line, f"node client ended without a summary: {await node.stderr.read()}"
                python.stop.set()
                await asyncio.wait_for(following, 10)
                node.stdin.close()
                await asyncio.wait_for(node.wait(), 10)
                return python.summary(), json.loads(line), final, start_step
            finally:
                following.cancel()
                if node.returncode is None:
                    node.kill()
                    await node.wait()

        py, nd, final, start_step = asyncio.run(main())

    api = {q["symbol"]: q for q in final["quotes"]}
    market_steps = final["step"] - start_step
    # At least 85% of the run's 240 steps: the market steps on the clock, and run_market's --run-for counts
    # from its start, after opening the market (a loaded machine may take a step or two of that).
    assert market_steps >= RUN_S * STEPS_PER_S * 0.85, f"the market made only {market_steps} steps"
    for report in (py, nd):
        who = report["client"]
        summary = {k: v for k, v in report.items() if k not in ("book", "steps")}
        print(json.dumps(summary))  # shown with -s, or under a failure
        # Negotiated: compression, as the server answers it (server_no_context_takeover: every frame compressed
        # on its own, so one compressed frame serves every client), and the delta format.
        assert report["extensions"] and "permessage-deflate" in report["extensions"], summary
        assert "server_no_context_takeover" in report["extensions"], summary
        assert report["negotiated"], summary
        assert report["protocol"] == "ticker.v2.json", summary
        # Every frame decoded (JSON with a known type), every quote applied, no seq gap, nothing unexpected.
        assert report["errorCount"] == 0 and report["errors"] == [], summary
        assert report["gaps"] == [], summary
        assert sum(report["frameTypes"].values()) == report["frames"], summary
        assert set(report["frameTypes"]) <= {"snapshot", "quotes", "heartbeat"}, summary
        # The run's quotes came as deltas (whole quotes only where the server had no previous one), each with
        # only the fields that changed: none repeats a value the client held at seq - 1.
        assert report["deltas"] > 0.9 * report["quotes"], summary
        assert report["redundantFields"] == 0, summary
        # A quotes frame for every market step that changed a price: with hundreds of symbols, every step.
        steps = report["steps"]
        assert steps == sorted(set(steps)), f"{who}: steps out of order"
        assert steps[-1] == final["step"], f"{who}: last quotes frame at step {steps[-1]}, market at {final['step']}"
        assert len(steps) >= market_steps - 1, f"{who}: {len(steps)} quotes frames for {market_steps} steps"
        assert len(steps) >= RUN_S * STEPS_PER_S * 0.85, f"{who}: only {len(steps)} quotes frames in {RUN_S} s"
        # Compressed: what the socket carried is a small fraction of the JSON decoded (measured: about a
        # quarter; deflate on JSON this repetitive is rarely above 40%). websockets' public extension API
        # also shows each frame's RSV1: every quotes frame (each well over the 256-byte threshold with every
        # symbol) came with it. (Node's ws has no public hook for that.)
        assert report["socketBytesRead"] < 0.5 * report["decodedBytes"], summary
        if report["client"].startswith("python"):
            assert report["compressedMessages"] >= report["frameTypes"]["quotes"], summary
            assert report["uncompressedLarge"] == 0, summary
        # The final book: every symbol at the database's final seq, each field as the database has it.
        book = report["book"]
        assert set(book) == set(api), f"{who}: symbols {sorted(set(book) ^ set(api))} differ from /api/quotes/"
        for symbol, quote in api.items():
            held = book[symbol]
            assert held["seq"] == quote["seq"], f"{who}: {symbol} at seq {held['seq']}, /api/quotes/ {quote['seq']}"
            assert held["history"][str(quote["seq"])] == quote["price"], f"{who}: {symbol} {held}, api {quote}"
            assert {k: held[k] for k in FIELDS} == {k: quote[k] for k in FIELDS}, f"{who}: {symbol}"
    # The two clients, each decoding on its own, saw the same steps, and the same price at every seq both hold.
    assert py["steps"] == nd["steps"]
    assert py["frameTypes"]["quotes"] == nd["frameTypes"]["quotes"]
    for symbol, held in py["book"].items():
        theirs = nd["book"][symbol]["history"]
        common = held["history"].keys() & theirs.keys()
        assert len(common) >= min(len(held["history"]), 10), f"{symbol}: histories barely overlap"
        assert {s: held["history"][s] for s in common} == {s: theirs[s] for s in common}, symbol
