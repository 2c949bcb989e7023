import { test } from "node:test";
import assert from "node:assert/strict";

import { PollingTransport, SILENCE_MS, WebSocketTransport, backoffDelay, wsUrl } from "../../static/ticker/js/transport.js";

// --- wsUrl -------------------------------------------------------------------

test("wsUrl uses an encrypted wss: socket on an https: page", () => {
  assert.equal(wsUrl({ protocol: "https:", host: "ticker.example.com" }), "wss://ticker.example.com/ws/quotes/");
});

test("wsUrl uses ws: on a plain http: page", () => {
  assert.equal(wsUrl({ protocol: "http:", host: "localhost" }), "ws://localhost/ws/quotes/");
});

test("wsUrl keeps the page's port and takes a custom path", () => {
  assert.equal(wsUrl({ protocol: "http:", host: "127.0.0.1:8000" }, "/ws/other/"), "ws://127.0.0.1:8000/ws/other/");
});

// --- backoffDelay ------------------------------------------------------------

test("backoffDelay doubles the longest wait with each attempt, starting at 500 ms, up to 5 s", () => {
  const longest = (attempt) => backoffDelay(attempt, { random: () => 1 });
  assert.deepEqual([0, 1, 2, 3, 4].map(longest), [500, 1000, 2000, 4000, 5000]);
});

test("backoffDelay never waits longer than max (5 s by default, so a restarted server is back within 10 s)", () => {
  assert.equal(backoffDelay(5, { random: () => 1 }), 5000);
  assert.equal(backoffDelay(30, { random: () => 1 }), 5000);
});

test("backoffDelay stays at max for absurdly many attempts", () => {
  assert.equal(backoffDelay(5000, { random: () => 1 }), 5000);
  assert.equal(backoffDelay(5000, { random: () => 0.5 }), 2500);
});

test("backoffDelay honours a custom base and max", () => {
  const opts = { base: 100, max: 1000, random: () => 1 };
  assert.deepEqual([0, 1, 2, 3, 4].map((a) => backoffDelay(a, opts)), [100, 200, 400, 800, 1000]);
});

test("backoffDelay picks a random wait between 0 and the cap (full jitter)", () => {
  assert.equal(backoffDelay(3, { random: () => 0 }), 0);
  assert.equal(backoffDelay(3, { random: () => 0.25 }), 1000);
  assert.equal(backoffDelay(3, { random: () => 0.5 }), 2000);
  assert.equal(backoffDelay(10, { random: () => 0.1 }), 500);
});

test("backoffDelay calls the injected random once per delay and rounds to whole ms", () => {
  let calls = 0;
  const random = () => {
    calls += 1;
    return 0.3333;
  };
  assert.equal(backoffDelay(0, { random }), 167);
  assert.equal(calls, 1);
});

test("backoffDelay falls back to Math.random", (t) => {
  t.mock.method(Math, "random", () => 0.5);
  assert.equal(backoffDelay(1), 500);
});

// --- fakes for the browser globals --------------------------------------------

/** Records every status/snapshot/quotes/request call the transport makes. */
function recorder() {
  const calls = { status: [], snapshot: [], quotes: [], request: 0, feedState: [] };
  const handlers = {
    status: (state, detail) => calls.status.push([state, detail]),
    feedState: (state) => calls.feedState.push(state),
    snapshot: (quotes, step) => calls.snapshot.push([quotes, step]),
    quotes: (quotes, step) => calls.quotes.push([quotes, step]),
    request: () => (calls.request += 1),
  };
  return { calls, handlers, lastStatus: () => calls.status.at(-1) };
}

/** Replaces setTimeout/clearTimeout for one test; timers run only when told to. */
function fakeTimers(t) {
  const pending = new Map();
  let nextId = 1;
  t.mock.method(globalThis, "setTimeout", (fn, ms) => {
    const id = nextId++;
    pending.set(id, { fn, ms });
    return id;
  });
  t.mock.method(globalThis, "clearTimeout", (id) => pending.delete(id));
  return {
    delays: () => [...pending.values()].map((timer) => timer.ms),
    /** Run the single pending timer (there must be exactly one). */
    fire() {
      assert.equal(pending.size, 1, "expected exactly one pending timer");
      const [[id, { fn }]] = pending;
      pending.delete(id);
      return fn();
    },
  };
}

class FakeWebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;
  static instances = [];

  constructor(url) {
    this.url = url;
    this.readyState = FakeWebSocket.CONNECTING;
    this.sent = [];
    this.closedWith = null;
    this.listeners = {};
    FakeWebSocket.instances.push(this);
  }

  addEventListener(type, fn) {
    (this.listeners[type] ??= []).push(fn);
  }

  emit(type, event = {}) {
    for (const fn of this.listeners[type] ?? []) fn(event);
  }

  send(data) {
    this.sent.push(JSON.parse(data));
  }

  close(code) {
    this.closedWith = code;
    this.readyState = FakeWebSocket.CLOSED;
  }

  // Test-side controls.
  serverOpens() {
    this.readyState = FakeWebSocket.OPEN;
    this.emit("open");
  }

  serverSends(frame) {
    this.emit("message", { data: JSON.stringify(frame) });
  }

  connectionDrops() {
    this.readyState = FakeWebSocket.CLOSED;
    this.emit("close", { code: 1006 });
  }
}

function installWebSocket(t) {
  FakeWebSocket.instances = [];
  const had = Object.hasOwn(globalThis, "WebSocket");
  const original = globalThis.WebSocket;
  globalThis.WebSocket = FakeWebSocket;
  t.after(() => {
    if (had) globalThis.WebSocket = original;
    else delete globalThis.WebSocket;
  });
  return FakeWebSocket.instances;
}

const WS_URL = "ws://test.invalid/ws/quotes/";

// --- WebSocketTransport -------------------------------------------------------------

test("WebSocketTransport shows 'connecting' and opens a socket to its url on start", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const { calls, handlers } = recorder();
  new WebSocketTransport(handlers, { url: WS_URL }).start();
  assert.equal(sockets.length, 1);
  assert.equal(sockets[0].url, WS_URL);
  assert.deepEqual(calls.status, [["connecting", "WebSocket"]]);
});

test("WebSocketTransport goes live and subscribes to its symbols once the socket opens", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const { calls, handlers, lastStatus } = recorder();
  new WebSocketTransport(handlers, { url: WS_URL, symbols: ["AAPL", "MSFT"] }).start();
  assert.deepEqual(sockets[0].sent, [], "nothing is sent before the socket is open");
  sockets[0].serverOpens();
  assert.deepEqual(lastStatus(), ["live", "WebSocket"]);
  assert.deepEqual(sockets[0].sent, [{ action: "subscribe", symbols: ["AAPL", "MSFT"] }]);
  assert.equal(calls.request, 1);
});

test("WebSocketTransport subscribes to every symbol by default", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  new WebSocketTransport(recorder().handlers, { url: WS_URL }).start();
  sockets[0].serverOpens();
  assert.deepEqual(sockets[0].sent, [{ action: "subscribe", symbols: ["*"] }]);
});

test("WebSocketTransport with an empty watchlist opens the socket but subscribes to nothing", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const { calls, handlers, lastStatus } = recorder();
  new WebSocketTransport(handlers, { url: WS_URL, symbols: [] }).start();
  sockets[0].serverOpens();
  assert.deepEqual(lastStatus(), ["live", "WebSocket"]);
  assert.deepEqual(sockets[0].sent, []);
  assert.equal(calls.request, 0);
});

test("WebSocketTransport hands snapshot and quotes frames to the matching handler", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const { calls, handlers } = recorder();
  new WebSocketTransport(handlers, { url: WS_URL }).start();
  sockets[0].serverOpens();
  const a = { symbol: "AAPL", seq: 1, price: 100 };
  const b = { symbol: "AAPL", seq: 2, price: 101 };
  sockets[0].serverSends({ type: "snapshot", quotes: [a], step: 10 });
  sockets[0].serverSends({ type: "quotes", quotes: [b], step: 11 });
  assert.deepEqual(calls.snapshot, [[[a], 10]]);
  assert.deepEqual(calls.quotes, [[[b], 11]]);
});

test("WebSocketTransport logs server error frames without treating them as quotes", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const warn = t.mock.method(console, "warn", () => {});
  const { calls, handlers } = recorder();
  new WebSocketTransport(handlers, { url: WS_URL }).start();
  sockets[0].serverOpens();
  sockets[0].serverSends({ type: "error", code: "bad_symbol", message: "unknown symbol ZZZZ" });
  assert.equal(warn.mock.callCount(), 1);
  assert.deepEqual(warn.mock.calls[0].arguments.slice(1), ["bad_symbol", "unknown symbol ZZZZ"]);
  assert.deepEqual(calls.snapshot, []);
  assert.deepEqual(calls.quotes, []);
});

test("WebSocketTransport.setSymbols drops the old subscription and subscribes to the new symbols", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const { calls, handlers } = recorder();
  const transport = new WebSocketTransport(handlers, { url: WS_URL });
  transport.start();
  sockets[0].serverOpens();
  sockets[0].sent.length = 0;
  transport.setSymbols(["TSLA"]);
  assert.deepEqual(sockets[0].sent, [
    { action: "unsubscribe", symbols: ["*"] },
    { action: "subscribe", symbols: ["TSLA"] },
  ]);
  assert.equal(calls.request, 3);
});

test("WebSocketTransport.setSymbols with an empty list only unsubscribes", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const transport = new WebSocketTransport(recorder().handlers, { url: WS_URL });
  transport.start();
  sockets[0].serverOpens();
  sockets[0].sent.length = 0;
  transport.setSymbols([]);
  assert.deepEqual(sockets[0].sent, [{ action: "unsubscribe", symbols: ["*"] }]);
});

test("WebSocketTransport.setSymbols before the socket is open subscribes to the new symbols on open", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const { calls, handlers } = recorder();
  const transport = new WebSocketTransport(handlers, { url: WS_URL });
  transport.start();
  transport.setSymbols(["NVDA"]);
  assert.deepEqual(sockets[0].sent, []);
  assert.equal(calls.request, 0);
  sockets[0].serverOpens();
  assert.deepEqual(sockets[0].sent, [{ action: "subscribe", symbols: ["NVDA"] }]);
});

test("WebSocketTransport.resync asks again for the gapped symbols", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const transport = new WebSocketTransport(recorder().handlers, { url: WS_URL });
  transport.start();
  sockets[0].serverOpens();
  sockets[0].sent.length = 0;
  transport.resync(["AAPL", "MSFT"]);
  assert.deepEqual(sockets[0].sent, [{ action: "subscribe", symbols: ["AAPL", "MSFT"] }]);
});

test("WebSocketTransport reconnects with a growing backoff after the connection drops", (t) => {
  const sockets = installWebSocket(t);
  const timers = fakeTimers(t);
  t.mock.method(Math, "random", () => 1);
  const { handlers, lastStatus } = recorder();
  new WebSocketTransport(handlers, { url: WS_URL }).start();
  sockets[0].serverOpens();

  sockets[0].connectionDrops();
  assert.deepEqual(lastStatus(), ["reconnecting", "WebSocket, retry in 0.5 s"]);
  assert.deepEqual(timers.delays(), [500]);
  timers.fire();
  assert.equal(sockets.length, 2);
  assert.equal(sockets[1].url, WS_URL);
  assert.deepEqual(lastStatus(), ["reconnecting", "WebSocket"]);

  sockets[1].connectionDrops(); // the retry failed too: wait longer
  assert.deepEqual(timers.delays(), [1000]);
  assert.deepEqual(lastStatus(), ["reconnecting", "WebSocket, retry in 1.0 s"]);
  timers.fire();
  assert.equal(sockets.length, 3);
});

test("WebSocketTransport goes back to the shortest backoff once a reconnect succeeds", (t) => {
  const sockets = installWebSocket(t);
  const timers = fakeTimers(t);
  t.mock.method(Math, "random", () => 1);
  const { handlers, lastStatus } = recorder();
  new WebSocketTransport(handlers, { url: WS_URL, symbols: ["AAPL"] }).start();
  sockets[0].connectionDrops();
  timers.fire();
  sockets[1].connectionDrops();
  timers.fire();
  sockets[2].serverOpens();
  assert.deepEqual(lastStatus(), ["live", "WebSocket"]);
  assert.deepEqual(sockets[2].sent, [{ action: "subscribe", symbols: ["AAPL"] }], "resubscribes after reconnecting");
  sockets[2].connectionDrops();
  assert.deepEqual(timers.delays(), [500]);
});

test("WebSocketTransport passes the heartbeat's feed state on, and nothing else from it", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const { calls, handlers } = recorder();
  new WebSocketTransport(handlers, { url: WS_URL }).start();
  sockets[0].serverOpens();
  sockets[0].serverSends({ type: "heartbeat", feed: "interrupted", step: 9, ts: 1 });
  sockets[0].serverSends({ type: "heartbeat", feed: "live", step: 9, ts: 2 });
  assert.deepEqual(calls.feedState, ["interrupted", "live"]);
  assert.deepEqual(calls.quotes, []);
  assert.deepEqual(calls.snapshot, []);
});

test("WebSocketTransport takes a socket silent for SILENCE_MS (no heartbeat) for dead and reconnects", (t) => {
  const sockets = installWebSocket(t);
  const timers = fakeTimers(t);
  t.mock.method(Math, "random", () => 1);
  const { lastStatus, handlers } = recorder();
  new WebSocketTransport(handlers, { url: WS_URL }).start();
  sockets[0].serverOpens();
  sockets[0].serverSends({ type: "heartbeat", feed: "live", step: 1, ts: 1 });
  assert.deepEqual(timers.delays(), [SILENCE_MS], "every frame re-arms the one silence timer");
  timers.fire(); // 12 s without a frame: a half-open connection
  assert.equal(sockets[0].closedWith, 4000);
  assert.deepEqual(lastStatus(), ["reconnecting", "WebSocket, retry in 0.5 s"]);
  sockets[0].emit("close", { code: 1006 }); // the late close event of the dead socket changes nothing
  assert.deepEqual(timers.delays(), [500]);
  timers.fire();
  assert.equal(sockets.length, 2);
});

test("WebSocketTransport.stop closes the socket normally and does not reconnect", (t) => {
  const sockets = installWebSocket(t);
  const timers = fakeTimers(t);
  const { calls, handlers } = recorder();
  const transport = new WebSocketTransport(handlers, { url: WS_URL });
  transport.start();
  sockets[0].serverOpens();
  const statusesBefore = calls.status.length;
  transport.stop();
  assert.equal(sockets[0].closedWith, 1000);
  sockets[0].emit("close", { code: 1000 });
  assert.deepEqual(timers.delays(), []);
  assert.equal(sockets.length, 1);
  assert.equal(calls.status.length, statusesBefore);
});

test("WebSocketTransport.stop during a reconnect wait cancels the pending retry", (t) => {
  const sockets = installWebSocket(t);
  const timers = fakeTimers(t);
  const transport = new WebSocketTransport(recorder().handlers, { url: WS_URL });
  transport.start();
  sockets[0].connectionDrops();
  assert.equal(timers.delays().length, 1);
  transport.stop();
  assert.deepEqual(timers.delays(), []);
  assert.equal(sockets.length, 1);
});

// --- PollingTransport ---------------------------------------------------------------

/** A fetch stand-in: answers each call with the next scripted response and records requests. */
function fakeFetch(t, responses) {
  const requests = [];
  const queue = [...responses];
  t.mock.method(globalThis, "fetch", async (url, init) => {
    requests.push({ url, headers: { ...init.headers }, cache: init.cache });
    const next = queue.shift();
    assert.ok(next, `unexpected fetch of ${url}`);
    if (next instanceof Error) throw next;
    return next;
  });
  return requests;
}

function response(status, body = null, etag = null) {
  return {
    status,
    headers: { get: (name) => (name.toLowerCase() === "etag" ? etag : null) },
    json: async () => body,
    text: async () => JSON.stringify(body),
  };
}

/** Let the transport's awaited fetch/json promises settle. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

test("PollingTransport fetches every symbol and hands the answer on as a snapshot", async (t) => {
  const timers = fakeTimers(t);
  const quotes = [{ symbol: "AAPL", seq: 3, price: 100 }];
  const requests = fakeFetch(t, [response(200, { quotes, step: 7 }, '"v1"')]);
  const { calls, handlers, lastStatus } = recorder();
  const transport = new PollingTransport(handlers, { url: "/api/quotes/", interval: 1000 });
  transport.start();
  await settle();
  assert.equal(requests.length, 1);
  assert.equal(requests[0].url, "/api/quotes/");
  assert.equal(requests[0].cache, "no-store");
  assert.deepEqual(requests[0].headers, {});
  assert.deepEqual(calls.snapshot, [[quotes, 7]]);
  assert.equal(calls.request, 1);
  assert.deepEqual(calls.status[0], ["connecting", "HTTP polling"]);
  assert.deepEqual(lastStatus(), ["polling", "HTTP polling every 1 s"]);
  assert.deepEqual(timers.delays(), [1000]);
  transport.stop();
});

test("PollingTransport asks only for the watched symbols, URL-encoded", async (t) => {
  fakeTimers(t);
  const requests = fakeFetch(t, [response(200, { quotes: [], step: 1 })]);
  const transport = new PollingTransport(recorder().handlers, { symbols: ["AAPL", "BRK.B"] });
  transport.start();
  await settle();
  assert.equal(requests[0].url, "/api/quotes/?symbols=AAPL%2CBRK.B");
  transport.stop();
});

test("PollingTransport re-polls with the last ETag and a 304 delivers nothing new", async (t) => {
  const timers = fakeTimers(t);
  const requests = fakeFetch(t, [response(200, { quotes: [], step: 1 }, '"v1"'), response(304)]);
  const { calls, handlers, lastStatus } = recorder();
  const transport = new PollingTransport(handlers, { interval: 2000 });
  transport.start();
  await settle();
  timers.fire();
  await settle();
  assert.equal(requests.length, 2);
  assert.deepEqual(requests[1].headers, { "If-None-Match": '"v1"' });
  assert.equal(calls.snapshot.length, 1);
  assert.equal(calls.request, 2);
  assert.deepEqual(lastStatus(), ["polling", "HTTP polling every 2 s"]);
  assert.deepEqual(timers.delays(), [2000]);
  transport.stop();
});

test("PollingTransport forgets the ETag when the symbols change", async (t) => {
  const timers = fakeTimers(t);
  const requests = fakeFetch(t, [
    response(200, { quotes: [], step: 1 }, '"all"'),
    response(200, { quotes: [], step: 2 }, '"aapl"'),
  ]);
  const transport = new PollingTransport(recorder().handlers);
  transport.start();
  await settle();
  transport.setSymbols(["AAPL"]);
  timers.fire();
  await settle();
  assert.equal(requests[1].url, "/api/quotes/?symbols=AAPL");
  assert.deepEqual(requests[1].headers, {});
  transport.stop();
});

test("PollingTransport shows 'reconnecting' on an HTTP error and keeps polling no faster than the interval", async (t) => {
  const timers = fakeTimers(t);
  t.mock.method(Math, "random", () => 0);
  const requests = fakeFetch(t, [response(503), response(200, { quotes: [], step: 1 })]);
  const { calls, handlers, lastStatus } = recorder();
  const transport = new PollingTransport(handlers, { interval: 1000 });
  transport.start();
  await settle();
  assert.deepEqual(lastStatus(), ["reconnecting", "HTTP polling failed (HTTP 503)"]);
  assert.deepEqual(calls.snapshot, []);
  assert.deepEqual(timers.delays(), [1000]);
  timers.fire();
  await settle();
  assert.equal(requests.length, 2);
  assert.deepEqual(lastStatus(), ["polling", "HTTP polling every 1 s"]);
  transport.stop();
});

test("PollingTransport backs off exponentially while the network keeps failing", async (t) => {
  const timers = fakeTimers(t);
  t.mock.method(Math, "random", () => 1);
  fakeFetch(t, [
    new TypeError("Failed to fetch"),
    new TypeError("Failed to fetch"),
    new TypeError("Failed to fetch"),
    new TypeError("Failed to fetch"),
    response(200, { quotes: [], step: 1 }),
    new TypeError("Failed to fetch"),
  ]);
  const { handlers, lastStatus } = recorder();
  const transport = new PollingTransport(handlers, { interval: 1000 });
  transport.start();
  const waits = [];
  for (let i = 0; i < 5; i++) {
    await settle();
    waits.push(timers.delays()[0]);
    if (i === 0) assert.deepEqual(lastStatus(), ["reconnecting", "HTTP polling failed (Failed to fetch)"]);
    timers.fire();
  }
  await settle();
  waits.push(timers.delays()[0]);
  // 500 and 1000 ms backoffs are raised to the 1 s interval; a success resets the backoff.
  assert.deepEqual(waits, [1000, 1000, 2000, 4000, 1000, 1000]);
  transport.stop();
});

test("PollingTransport with an empty watchlist waits without fetching", async (t) => {
  const timers = fakeTimers(t);
  const requests = fakeFetch(t, []);
  const { calls, handlers, lastStatus } = recorder();
  const transport = new PollingTransport(handlers, { symbols: [], interval: 1000 });
  transport.start();
  await settle();
  assert.equal(requests.length, 0);
  assert.equal(calls.request, 0);
  assert.deepEqual(lastStatus(), ["polling", "HTTP polling (watchlist empty)"]);
  assert.deepEqual(timers.delays(), [1000]);
  transport.stop();
});

test("PollingTransport.stop cancels the next poll", async (t) => {
  const timers = fakeTimers(t);
  const requests = fakeFetch(t, [response(200, { quotes: [], step: 1 })]);
  const transport = new PollingTransport(recorder().handlers);
  transport.start();
  await settle();
  transport.stop();
  assert.deepEqual(timers.delays(), []);
  assert.equal(requests.length, 1);
});

test("PollingTransport.stop while a request is in flight drops its answer", async (t) => {
  const timers = fakeTimers(t);
  fakeFetch(t, [response(200, { quotes: [{ symbol: "AAPL", seq: 1, price: 1 }], step: 1 })]);
  const { calls, handlers } = recorder();
  const transport = new PollingTransport(handlers);
  transport.start();
  transport.stop(); // before the fetch promise resolves
  await settle();
  assert.deepEqual(calls.snapshot, []);
  assert.deepEqual(calls.status, [["connecting", "HTTP polling"]]);
  assert.deepEqual(timers.delays(), []);
});

test(
  "PollingTransport.stop while a request is in flight stays silent even if that request then fails",
  async (t) => {
    const timers = fakeTimers(t);
    let fail;
    t.mock.method(globalThis, "fetch", () => new Promise((_, reject) => (fail = reject)));
    const { calls, handlers } = recorder();
    const transport = new PollingTransport(handlers);
    transport.start();
    transport.stop();
    fail(new TypeError("Failed to fetch"));
    await settle();
    assert.deepEqual(calls.status, [["connecting", "HTTP polling"]]);
    assert.deepEqual(timers.delays(), []);
  },
);

test(
  "PollingTransport.stop while the response body is being read stays silent",
  async (t) => {
    const timers = fakeTimers(t);
    let finishBody;
    const slowBody = {
      status: 200,
      headers: { get: () => null },
      text: () => new Promise((resolve) => (finishBody = (value) => resolve(JSON.stringify(value)))),
    };
    t.mock.method(globalThis, "fetch", async () => slowBody);
    const { calls, handlers } = recorder();
    const transport = new PollingTransport(handlers);
    transport.start();
    await settle();
    transport.stop();
    finishBody({ quotes: [{ symbol: "AAPL", seq: 1, price: 1 }], step: 1 });
    await settle();
    assert.deepEqual(calls.snapshot, []);
    assert.deepEqual(calls.status, [["connecting", "HTTP polling"]]);
    assert.deepEqual(timers.delays(), []);
  },
);
