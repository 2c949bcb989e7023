import assert from "node:assert/strict";
import { test } from "node:test";

import { TransportChain } from "../../static/ticker/js/chain.js";

function fakes() {
  const made = [];
  const make = (name, handlers, options) => {
    const transport = { name, label: `label of ${name}`, handlers, options, started: 0, stopped: false };
    transport.start = () => (transport.started += 1);
    transport.stop = () => (transport.stopped = true);
    transport.setSymbols = (symbols) => (transport.symbols = symbols);
    transport.resync = (symbols) => (transport.resynced = symbols);
    made.push(transport);
    return transport;
  };
  const seen = { status: [], snapshot: [], quotes: [], request: [] };
  const handlers = {
    status: (...args) => seen.status.push(args),
    snapshot: (...args) => seen.snapshot.push(args),
    quotes: (...args) => seen.quotes.push(args),
    request: (...args) => seen.request.push(args),
  };
  return { made, make, seen, handlers };
}

test("the chain starts with WebSocket and asks it to fail fast", () => {
  const { made, make, handlers } = fakes();
  new TransportChain(handlers, { make }).start();
  assert.equal(made[0].name, "websocket");
  assert.equal(made[0].options.failFast, true);
});

test("a failing transport falls back to the next one, in order", () => {
  const { made, make, handlers } = fakes();
  const chain = new TransportChain(handlers, { make, upgradeMs: 1e9 });
  chain.start();
  made[0].handlers.failed("refused");
  made[1].handlers.failed("refused");
  made[2].handlers.failed("refused");
  assert.deepEqual(made.map((t) => t.name), ["websocket", "sse", "longpoll", "polling"]);
  assert.deepEqual(made.slice(0, 3).map((t) => t.stopped), [true, true, true]);
  assert.equal(chain.transport, "polling");
  chain.stop();
});

test("a pinned transport is used alone and does not fail fast", () => {
  const { made, make, handlers } = fakes();
  const chain = new TransportChain(handlers, { make, pinned: "longpoll" });
  chain.start();
  assert.equal(made.length, 1);
  assert.equal(made[0].name, "longpoll");
  assert.equal(made[0].options.failFast, false);
});

test("an unknown pinned transport is refused", () => {
  assert.throws(() => new TransportChain(fakes().handlers, { pinned: "carrier-pigeon" }));
});

test("status and data are forwarded with the live transport's name", () => {
  const { made, make, seen, handlers } = fakes();
  new TransportChain(handlers, { make }).start();
  made[0].handlers.status("live", "WebSocket");
  made[0].handlers.snapshot([{ symbol: "A", seq: 1 }], 5);
  made[0].handlers.quotes([{ symbol: "A", seq: 2 }], 6);
  made[0].handlers.request();
  assert.deepEqual(seen.status, [["live", "WebSocket", "websocket"]]);
  assert.equal(seen.snapshot.length, 1);
  assert.equal(seen.quotes.length, 1);
  assert.deepEqual(seen.request, [["websocket"]]);
});

test("an upgrade probe replaces the fallback only once it delivers a snapshot", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { made, make, seen, handlers } = fakes();
  const chain = new TransportChain(handlers, { make, upgradeMs: 30000 });
  chain.start();
  made[0].handlers.failed("refused");
  assert.equal(chain.transport, "sse");
  t.mock.timers.tick(30000);
  const probe = made[2];
  assert.equal(probe.name, "websocket");
  probe.handlers.status("live", "WebSocket");
  probe.handlers.quotes([{ symbol: "A", seq: 9 }], 9);
  assert.equal(chain.transport, "sse", "a probe that has not delivered a snapshot changes nothing");
  assert.equal(seen.quotes.length, 0);
  probe.handlers.snapshot([{ symbol: "A", seq: 9 }], 9);
  assert.equal(chain.transport, "websocket");
  assert.equal(made[1].stopped, true);
  assert.equal(seen.snapshot.length, 1);
  assert.deepEqual(seen.status.at(-1), ["live", "label of websocket", "websocket"], "the badge names the new transport");
  chain.stop();
});

test("the chain hands its transport options to every transport it makes, probes included", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { made, make, handlers } = fakes();
  const chain = new TransportChain(handlers, { make, symbols: ["A"], transportOptions: { silenceMs: 3000 } });
  chain.start();
  made[0].handlers.failed("refused");
  t.mock.timers.tick(30000);
  assert.deepEqual(
    made.map((transport) => [transport.name, transport.options]),
    [
      ["websocket", { silenceMs: 3000, symbols: ["A"], movers: 0, failFast: true }],
      ["sse", { silenceMs: 3000, symbols: ["A"], movers: 0, failFast: true }],
      ["websocket", { silenceMs: 3000, symbols: ["A"], movers: 0, failFast: true }],
    ],
  );
  chain.stop();
});

test("a failed probe tries the next better transport, then waits for the next round", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { made, make, handlers } = fakes();
  const chain = new TransportChain(handlers, { make, upgradeMs: 30000 });
  chain.start();
  made[0].handlers.failed("refused");
  made[1].handlers.failed("refused");
  assert.equal(chain.transport, "longpoll");
  t.mock.timers.tick(30000);
  made[3].handlers.failed("refused"); // the WebSocket probe
  assert.equal(made[4].name, "sse");
  made[4].handlers.failed("refused");
  assert.equal(made.length, 5, "no more probes until the next round");
  assert.equal(chain.transport, "longpoll");
  t.mock.timers.tick(30000);
  assert.equal(made[5].name, "websocket");
  chain.stop();
});

test("symbol changes and resyncs go to the live transport", () => {
  const { made, make, handlers } = fakes();
  const chain = new TransportChain(handlers, { make });
  chain.start();
  chain.setSymbols(["A"]);
  chain.resync(["A"]);
  assert.deepEqual(made[0].symbols, ["A"]);
  assert.deepEqual(made[0].resynced, ["A"]);
});

test("movers go to every transport the chain makes, and a new count to the live one and its probe", () => {
  const { made, make, handlers } = fakes();
  const chain = new TransportChain(handlers, { make, movers: 10, upgradeMs: 1e9 });
  chain.start();
  assert.equal(made[0].options.movers, 10);
  made[0].handlers.failed("refused");
  assert.equal(made[1].options.movers, 10);
  made[1].setMovers = (count) => (made[1].movers = count);
  chain.setMovers(0);
  assert.equal(made[1].movers, 0);
  assert.equal(chain.movers, 0);
  chain.stop();
});

test("movers, delisted, session and error frames reach the page only from the live transport", () => {
  const { made, make } = fakes();
  const seen = [];
  const handlers = {
    status: () => {},
    snapshot: () => {},
    quotes: () => {},
    request: () => {},
    movers: (frame) => seen.push(["movers", frame]),
    delisted: (symbols) => seen.push(["delisted", symbols]),
    session: (session) => seen.push(["session", session]),
    error: (frame) => seen.push(["error", frame]),
  };
  const chain = new TransportChain(handlers, { make, upgradeMs: 0 });
  chain.start();
  made[0].handlers.failed("refused"); // on SSE now; an upgrade probe (WebSocket) is due
  chain.tryUpgrade(0);
  const [live, probe] = [made[1], made[2]];
  probe.handlers.movers({ step: 1 });
  probe.handlers.error({ code: "x" });
  live.handlers.movers({ step: 2 });
  live.handlers.delisted(["XYZ"]);
  live.handlers.session({ state: "open" });
  live.handlers.error({ code: "unknown_symbol" });
  assert.deepEqual(seen, [
    ["movers", { step: 2 }],
    ["delisted", ["XYZ"]],
    ["session", { state: "open" }],
    ["error", { code: "unknown_symbol" }],
  ]);
  chain.stop();
});
