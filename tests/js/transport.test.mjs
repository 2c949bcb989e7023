import { test } from "node:test";
import assert from "node:assert/strict";

import {
  LongPollTransport,
  MoversPoll,
  PollingTransport,
  SILENCE_MS,
  SseTransport,
  Transport,
  WebSocketTransport,
  backoffDelay,
  busyDelay,
  closeRetrySeconds,
  quotesQuery,
  retryAfterSeconds,
  wsUrl,
} from "../../static/ticker/js/transport.js";
import { TransportChain } from "../../static/ticker/js/chain.js";

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

// --- quotesQuery -------------------------------------------------------------

test("quotesQuery leaves the symbols out for all symbols, so the URL is bare", () => {
  assert.equal(quotesQuery(["*"]), "");
});

test("quotesQuery names the symbols, URL-encoded, then the other parameters in order", () => {
  assert.equal(quotesQuery(["AAPL", "BRK.B"]), "?symbols=AAPL%2CBRK.B");
  assert.equal(quotesQuery(["AAPL"], { since: 12, wait: 25 }), "?symbols=AAPL&since=12&wait=25");
  assert.equal(quotesQuery(["*"], { since: 0 }), "?since=0");
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

/** Records every handler call the transport makes. */
function recorder() {
  const calls = {
    status: [],
    snapshot: [],
    quotes: [],
    request: 0,
    feedState: [],
    failed: [],
    traffic: [],
    error: [],
    movers: [],
    delisted: [],
    session: [],
  };
  const handlers = {
    error: (frame) => calls.error.push(frame),
    movers: (frame) => calls.movers.push(frame),
    delisted: (symbols) => calls.delisted.push(symbols),
    session: (session) => calls.session.push(session),
    status: (state, detail) => calls.status.push([state, detail]),
    feedState: (state) => calls.feedState.push(state),
    snapshot: (quotes, step) => calls.snapshot.push([quotes, step]),
    quotes: (quotes, step) => calls.quotes.push([quotes, step]),
    request: () => (calls.request += 1),
    failed: (reason) => calls.failed.push(reason),
    traffic: (record) => calls.traffic.push(record),
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
    /** Run the single pending timer set for `ms` (there must be exactly one). */
    fireAfter(ms) {
      const due = [...pending].filter(([, timer]) => timer.ms === ms);
      assert.equal(due.length, 1, `expected exactly one pending timer of ${ms} ms`);
      const [[id, { fn }]] = due;
      pending.delete(id);
      return fn();
    },
  };
}

/** What the browser's WebSocket and EventSource share: a url, a readyState and listeners. */
class FakeConnection {
  static instances = [];

  constructor(url) {
    this.url = url;
    this.readyState = this.constructor.CONNECTING;
    this.listeners = {};
    this.constructor.instances.push(this);
  }

  addEventListener(type, fn) {
    (this.listeners[type] ??= []).push(fn);
  }

  emit(type, event = {}) {
    for (const fn of this.listeners[type] ?? []) fn({ type, ...event });
  }
}

/** Puts Fake in place of the browser global `name` for one test; returns the list of instances it makes. */
function installFake(t, name, Fake) {
  Fake.instances = [];
  const had = Object.hasOwn(globalThis, name);
  const original = globalThis[name];
  globalThis[name] = Fake;
  t.after(() => {
    if (had) globalThis[name] = original;
    else delete globalThis[name];
  });
  return Fake.instances;
}

class FakeWebSocket extends FakeConnection {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  constructor(url, protocols = []) {
    super(url);
    this.protocols = protocols;
    // As the browser's: empty until the server's handshake answer says otherwise.
    this.protocol = "";
    this.extensions = "";
    this.sent = [];
    this.closedWith = null;
  }

  send(data) {
    this.sent.push(JSON.parse(data));
  }

  close(code) {
    this.closedWith = code;
    this.readyState = FakeWebSocket.CLOSED;
  }

  // Test-side controls.
  /** The handshake is answered: with `protocol` and `extensions`, what the server agreed to. */
  serverOpens({ protocol = "", extensions = "" } = {}) {
    this.protocol = protocol;
    this.extensions = extensions;
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

  serverCloses(code, reason = "") {
    this.readyState = FakeWebSocket.CLOSED;
    this.emit("close", { code, reason });
  }
}

const installWebSocket = (t) => installFake(t, "WebSocket", FakeWebSocket);

const WS_URL = "ws://test.invalid/ws/quotes/";

// --- Transport: the lifecycle every transport shares -------------------------

/** The smallest transport: counts what the base asks of it. */
class CountingTransport extends Transport {
  static label = "counting";

  constructor(handlers, options) {
    super(handlers, options);
    this.opened = 0;
    this.closed = 0;
    this.silences = 0;
  }

  open() {
    this.opened += 1;
  }

  close() {
    this.closed += 1;
  }

  silent() {
    this.silences += 1;
  }
}

test("Transport.start says 'connecting' with the transport's label and opens it", (t) => {
  fakeTimers(t);
  const { calls, handlers } = recorder();
  const transport = new CountingTransport(handlers);
  transport.start();
  assert.deepEqual(calls.status, [["connecting", "counting"]]);
  assert.equal(transport.opened, 1);
  assert.equal(transport.stopped, false);
});

test("Transport.retry reopens after a growing backoff, says 'reconnecting' until connected, then starts over", (t) => {
  const timers = fakeTimers(t);
  t.mock.method(Math, "random", () => 1);
  const { calls, handlers, lastStatus } = recorder();
  const transport = new CountingTransport(handlers);
  transport.start();
  transport.retry("lost");
  assert.deepEqual(lastStatus(), ["reconnecting", "counting, retry in 0.5 s"]);
  assert.deepEqual(timers.delays(), [500]);
  timers.fire();
  assert.deepEqual([transport.closed, transport.opened], [1, 2], "a retry closes, then opens again");
  assert.deepEqual(lastStatus(), ["reconnecting", "counting"]);
  transport.retry("lost again");
  assert.deepEqual(timers.delays(), [1000]);
  timers.fire();
  transport.connected();
  assert.deepEqual(lastStatus(), ["live", "counting"]);
  transport.retry("lost after working");
  assert.deepEqual(timers.delays(), [500], "connected() resets the backoff");
  assert.deepEqual(calls.failed, [], "without failFast a transport never gives up");
});

test("Transport with failFast gives up on its first failure before any snapshot: stopped, failed(reason) once", (t) => {
  const timers = fakeTimers(t);
  const { calls, handlers } = recorder();
  const transport = new CountingTransport(handlers, { failFast: true });
  transport.start();
  transport.retry("refused");
  assert.deepEqual(calls.failed, ["refused"]);
  assert.equal(transport.stopped, true);
  assert.equal(transport.closed, 1);
  assert.deepEqual(timers.delays(), [], "no retry and no connect timer left");
  transport.retry("refused again");
  assert.deepEqual(calls.failed, ["refused"], "a stopped transport reports nothing more");
});

test("Transport with failFast gives up when no snapshot comes within 5 s of starting", (t) => {
  const timers = fakeTimers(t);
  const { calls, handlers } = recorder();
  const transport = new CountingTransport(handlers, { failFast: true });
  transport.start();
  assert.deepEqual(timers.delays(), [5000]);
  timers.fire();
  assert.deepEqual(calls.failed, ["no data in time"]);
  assert.equal(transport.stopped, true);
});

test("Transport with failFast retries like any other once it has delivered a snapshot", (t) => {
  const timers = fakeTimers(t);
  t.mock.method(Math, "random", () => 1);
  const { calls, handlers, lastStatus } = recorder();
  const transport = new CountingTransport(handlers, { failFast: true });
  transport.start();
  transport.delivered();
  assert.deepEqual(timers.delays(), [], "the snapshot cancels the connect timer");
  transport.retry("server restarted");
  assert.deepEqual(calls.failed, []);
  assert.deepEqual(lastStatus(), ["reconnecting", "counting, retry in 0.5 s"]);
  timers.fire();
  assert.deepEqual(timers.delays(), [], "a transport that has worked arms no connect timer on restart");
});

test("Transport calls silent() after silenceMs without heard(), and each message re-arms the one timer", (t) => {
  const timers = fakeTimers(t);
  const transport = new CountingTransport(recorder().handlers, { silenceMs: 3000 });
  transport.start();
  transport.connected();
  transport.heard();
  transport.heard();
  assert.deepEqual(timers.delays(), [3000]);
  timers.fire();
  assert.equal(transport.silences, 1);
});

test("Transport.stop cancels the retry, connect and silence timers, closes, and a later restart does nothing", (t) => {
  const timers = fakeTimers(t);
  const { calls, handlers } = recorder();
  const transport = new CountingTransport(handlers, { failFast: true });
  transport.start();
  transport.connected();
  transport.later(() => assert.fail("a stopped transport ran its timer"), 1000);
  assert.equal(timers.delays().length, 3);
  const statuses = calls.status.length;
  transport.stop();
  assert.deepEqual(timers.delays(), []);
  assert.equal(transport.closed, 1);
  transport.restart();
  assert.equal(transport.opened, 1);
  assert.equal(calls.status.length, statuses);
});

test("Transport.later keeps one pending timer: a new one replaces the old", (t) => {
  const timers = fakeTimers(t);
  const transport = new CountingTransport(recorder().handlers);
  transport.later(() => assert.fail("the replaced timer ran"), 1000);
  transport.later(() => {}, 2000);
  assert.deepEqual(timers.delays(), [2000]);
});

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
  delete handlers.error;
  new WebSocketTransport(handlers, { url: WS_URL }).start();
  sockets[0].serverOpens();
  sockets[0].serverSends({ type: "error", code: "bad_symbol", message: "unknown symbol ZZZZ" });
  assert.equal(warn.mock.callCount(), 1);
  assert.deepEqual(warn.mock.calls[0].arguments.slice(1), ["bad_symbol", "unknown symbol ZZZZ"]);
  assert.deepEqual(calls.snapshot, []);
  assert.deepEqual(calls.quotes, []);
});

test("WebSocketTransport hands error frames to the error handler and forgets an unknown symbol", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const { calls, handlers } = recorder();
  const transport = new WebSocketTransport(handlers, { url: WS_URL, symbols: ["AAPL", "NOPE"] });
  transport.start();
  sockets[0].serverOpens();
  const error = { type: "error", code: "unknown_symbol", message: "Unknown symbol(s): NOPE.", symbols: ["NOPE"] };
  sockets[0].serverSends(error);
  assert.deepEqual(calls.error, [error]);
  assert.deepEqual(transport.symbols, ["AAPL"]);
  sockets[0].sent.length = 0;
  transport.setSymbols(["AAPL", "NOPE"]);
  assert.deepEqual(sockets[0].sent, [{ action: "subscribe", symbols: ["NOPE"] }], "asked again later, e.g. once listed");
});

test("WebSocketTransport passes movers, delisted and the session on; a delisted symbol leaves its subscription", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const { calls, handlers } = recorder();
  const transport = new WebSocketTransport(handlers, { url: WS_URL, symbols: ["AAPL", "XYZ"] });
  transport.start();
  sockets[0].serverOpens();
  const session = { state: "open", until: 123 };
  sockets[0].serverSends({ type: "heartbeat", feed: "live", step: 1, ts: 1, session });
  const movers = { type: "movers", step: 2, listed: 30, gainers: [], losers: [] };
  sockets[0].serverSends(movers);
  sockets[0].serverSends({ type: "delisted", step: 3, symbols: ["XYZ"] });
  assert.deepEqual(calls.session, [session]);
  assert.deepEqual(calls.movers, [movers]);
  assert.deepEqual(calls.delisted, [["XYZ"]]);
  assert.deepEqual(transport.symbols, ["AAPL"]);
});

test("WebSocketTransport asks for movers once open, and again or stops when the count changes", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const transport = new WebSocketTransport(recorder().handlers, { url: WS_URL, symbols: ["AAPL"], movers: 10 });
  transport.start();
  sockets[0].serverOpens();
  assert.deepEqual(sockets[0].sent, [
    { action: "subscribe", symbols: ["AAPL"] },
    { action: "movers", count: 10 },
  ]);
  transport.setMovers(10);
  transport.setMovers(0);
  assert.deepEqual(sockets[0].sent.slice(2), [{ action: "movers", count: 0 }]);
});

test("WebSocketTransport.setSymbols between two lists sends only the difference", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const transport = new WebSocketTransport(recorder().handlers, { url: WS_URL, symbols: ["AAPL", "MSFT"] });
  transport.start();
  sockets[0].serverOpens();
  sockets[0].sent.length = 0;
  transport.setSymbols(["MSFT", "NVDA"]);
  transport.setSymbols(["NVDA", "MSFT"]);
  assert.deepEqual(sockets[0].sent, [
    { action: "unsubscribe", symbols: ["AAPL"] },
    { action: "subscribe", symbols: ["NVDA"] },
  ]);
});

test("WebSocketTransport subscribes at most 100 symbols a message", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const symbols = Array.from({ length: 150 }, (_, i) => `S${i}`);
  new WebSocketTransport(recorder().handlers, { url: WS_URL, symbols }).start();
  sockets[0].serverOpens();
  assert.deepEqual(
    sockets[0].sent.map((m) => m.symbols.length),
    [100, 50],
  );
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

test("WebSocketTransport takes its silence timeout from its options (the page's config)", (t) => {
  const sockets = installWebSocket(t);
  const timers = fakeTimers(t);
  new WebSocketTransport(recorder().handlers, { url: WS_URL, silenceMs: 3000 }).start();
  sockets[0].serverOpens();
  assert.deepEqual(timers.delays(), [3000]);
  timers.fire();
  assert.equal(sockets[0].closedWith, 4000);
});

test("WebSocketTransport reports each frame it sends and receives, as text, through traffic", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const { calls, handlers } = recorder();
  new WebSocketTransport(handlers, { url: WS_URL, symbols: ["AAPL"] }).start();
  sockets[0].serverOpens();
  sockets[0].serverSends({ type: "snapshot", quotes: [], step: 1 });
  assert.deepEqual(calls.traffic, [
    { kind: "websocket", direction: "out", text: JSON.stringify({ action: "subscribe", symbols: ["AAPL"] }) },
    {
      kind: "websocket",
      direction: "in",
      text: JSON.stringify({ type: "snapshot", quotes: [], step: 1 }),
      protocol: "",
      extensions: "",
      whole: null,
    },
  ]);
});

// --- WebSocketTransport on the delta format (delta.js, docs/protocol.md "Quote formats") ---

const WHOLE = {
  symbol: "AAPL",
  price: 190.0,
  prev_close: 189.5,
  change: 0.5,
  change_pct: 0.26,
  open: 189.5,
  high: 190.0,
  low: 189.5,
  volume: 1000,
  seq: 7,
  ts: 1000,
  halted: false,
};

test("WebSocketTransport asks for the delta format, and reads whole frames when the server does not agree", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const { calls, handlers } = recorder();
  new WebSocketTransport(handlers, { url: WS_URL, symbols: ["AAPL"] }).start();
  assert.deepEqual(sockets[0].protocols, ["ticker.v2.json"]);
  sockets[0].serverOpens(); // no protocol chosen: whole quotes, passed on as they come
  sockets[0].serverSends({ type: "quotes", step: 2, quotes: [{ symbol: "AAPL", seq: 8 }] });
  assert.deepEqual(calls.quotes, [[[{ symbol: "AAPL", seq: 8 }], 2]]);
});

test("WebSocketTransport on the delta format hands on whole quotes, with change and change_pct worked out", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const { calls, handlers } = recorder();
  new WebSocketTransport(handlers, { url: WS_URL, symbols: ["AAPL"] }).start();
  sockets[0].serverOpens({ protocol: "ticker.v2.json", extensions: "permessage-deflate; server_no_context_takeover" });
  sockets[0].serverSends({ type: "snapshot", step: 1, quotes: [WHOLE] });
  sockets[0].serverSends({ type: "quotes", step: 2, quotes: [{ symbol: "AAPL", seq: 8, price: 188.55, ts: 1250 }] });
  assert.deepEqual(calls.quotes, [
    [[{ ...WHOLE, price: 188.55, seq: 8, ts: 1250, change: -0.95, change_pct: -0.5 }], 2],
  ]);
  const record = calls.traffic.at(-1);
  assert.equal(record.protocol, "ticker.v2.json");
  assert.equal(record.extensions, "permessage-deflate; server_no_context_takeover");
  assert.deepEqual(JSON.parse(record.whole).quotes, calls.quotes[0][0]);
});

test("WebSocketTransport on the delta format asks again after a delisting and relisting, never for a dropped symbol", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const { handlers } = recorder();
  const everything = new WebSocketTransport(handlers, { url: WS_URL, symbols: ["*"] });
  everything.start();
  const socket = sockets[0];
  socket.serverOpens({ protocol: "ticker.v2.json" });
  socket.serverSends({ type: "snapshot", step: 1, quotes: [WHOLE] });
  const asked = (s) => s.sent.filter((m) => m.action === "subscribe").slice(1);
  socket.serverSends({ type: "quotes", step: 3, quotes: [{ symbol: "AAPL", seq: 9, price: 191 }] });
  assert.deepEqual(asked(socket), [{ action: "subscribe", symbols: ["AAPL"] }]);
  // Delisted before the snapshot came, then listed again (its first quote whole): a later gap is asked for again.
  socket.serverSends({ type: "delisted", step: 4, symbols: ["AAPL"] });
  socket.serverSends({ type: "quotes", step: 9, quotes: [{ ...WHOLE, seq: 20 }] });
  socket.serverSends({ type: "quotes", step: 11, quotes: [{ symbol: "AAPL", seq: 22, price: 193 }] });
  assert.equal(asked(socket).length, 2);

  // A delta in flight for a symbol the page has just dropped is not a reason to subscribe it again.
  const watchlist = new WebSocketTransport(handlers, { url: WS_URL, symbols: ["AAPL", "MSFT"] });
  watchlist.start();
  const other = sockets[1];
  other.serverOpens({ protocol: "ticker.v2.json" });
  other.serverSends({ type: "snapshot", step: 1, quotes: [WHOLE, { ...WHOLE, symbol: "MSFT" }] });
  watchlist.setSymbols(["AAPL"]);
  other.serverSends({ type: "quotes", step: 12, quotes: [{ symbol: "MSFT", seq: 30, price: 401 }] });
  assert.deepEqual(asked(other), []);
});

test("WebSocketTransport on the delta format asks once for a snapshot of a symbol whose delta does not apply", (t) => {
  const sockets = installWebSocket(t);
  fakeTimers(t);
  const { calls, handlers } = recorder();
  new WebSocketTransport(handlers, { url: WS_URL, symbols: ["AAPL"] }).start();
  sockets[0].serverOpens({ protocol: "ticker.v2.json" });
  sockets[0].serverSends({ type: "snapshot", step: 1, quotes: [WHOLE] });
  // seq 8 never came: 9 and 10 cannot be applied, and are not handed on.
  sockets[0].serverSends({ type: "quotes", step: 3, quotes: [{ symbol: "AAPL", seq: 9, price: 191 }] });
  sockets[0].serverSends({ type: "quotes", step: 4, quotes: [{ symbol: "AAPL", seq: 10, price: 192 }] });
  assert.deepEqual(calls.quotes, [
    [[], 3],
    [[], 4],
  ]);
  const resubscribes = sockets[0].sent.filter((m) => m.action === "subscribe").slice(1);
  assert.deepEqual(resubscribes, [{ action: "subscribe", symbols: ["AAPL"] }]);
  // The snapshot makes it whole again; deltas apply from there.
  sockets[0].serverSends({ type: "snapshot", step: 4, quotes: [{ ...WHOLE, seq: 10, price: 192 }] });
  sockets[0].serverSends({ type: "quotes", step: 5, quotes: [{ symbol: "AAPL", seq: 11, volume: 1100 }] });
  assert.equal(calls.quotes.at(-1)[0][0].volume, 1100);
  assert.equal(calls.quotes.at(-1)[0][0].price, 192);
  assert.equal(calls.quotes.at(-1)[0][0].change, 2.5);
});

test("WebSocketTransport with failFast reports a socket closed before any snapshot as failed", (t) => {
  const sockets = installWebSocket(t);
  const timers = fakeTimers(t);
  const { calls, handlers } = recorder();
  new WebSocketTransport(handlers, { url: WS_URL, failFast: true }).start();
  sockets[0].connectionDrops();
  assert.deepEqual(calls.failed, ["WebSocket closed before any data"]);
  assert.deepEqual(timers.delays(), []);
  assert.equal(sockets.length, 1);
});

// --- SseTransport ------------------------------------------------------------

class FakeEventSource extends FakeConnection {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 2;

  close() {
    this.readyState = FakeEventSource.CLOSED;
  }

  // Test-side controls.
  serverOpens() {
    this.readyState = FakeEventSource.OPEN;
    this.emit("open");
  }

  serverSends(type, id, frame) {
    this.emit(type, { lastEventId: String(id), data: JSON.stringify(frame) });
  }

  fails({ closed }) {
    this.readyState = closed ? FakeEventSource.CLOSED : FakeEventSource.CONNECTING;
    this.emit("error");
  }
}

const installEventSource = (t) => installFake(t, "EventSource", FakeEventSource);

test("SseTransport opens the stream for its symbols and goes live when it opens", (t) => {
  const sources = installEventSource(t);
  fakeTimers(t);
  const { calls, handlers, lastStatus } = recorder();
  new SseTransport(handlers, { symbols: ["AAPL", "MSFT"] }).start();
  assert.equal(sources[0].url, "/api/quotes/stream/?symbols=AAPL%2CMSFT");
  assert.deepEqual(lastStatus(), ["connecting", "Server-Sent Events"]);
  assert.equal(calls.request, 1);
  sources[0].serverOpens();
  assert.deepEqual(lastStatus(), ["live", "Server-Sent Events"]);
});

test("SseTransport hands snapshot, quotes and heartbeat events on, and reports each one through traffic", (t) => {
  const sources = installEventSource(t);
  fakeTimers(t);
  const { calls, handlers } = recorder();
  new SseTransport(handlers).start();
  assert.equal(sources[0].url, "/api/quotes/stream/");
  sources[0].serverOpens();
  const a = { symbol: "AAPL", seq: 1, price: 100 };
  const b = { symbol: "AAPL", seq: 2, price: 101 };
  sources[0].serverSends("snapshot", 10, { type: "snapshot", quotes: [a], step: 10 });
  sources[0].serverSends("quotes", 11, { type: "quotes", quotes: [b], step: 11 });
  sources[0].serverSends("heartbeat", 11, { type: "heartbeat", feed: "interrupted", step: 11, ts: 1 });
  assert.deepEqual(calls.snapshot, [[[a], 10]]);
  assert.deepEqual(calls.quotes, [[[b], 11]]);
  assert.deepEqual(calls.feedState, ["interrupted"]);
  assert.deepEqual(
    calls.traffic.map(({ kind, event, id }) => [kind, event, id]),
    [
      ["sse", "snapshot", "10"],
      ["sse", "quotes", "11"],
      ["sse", "heartbeat", "11"],
    ],
  );
  assert.equal(calls.traffic[1].text, JSON.stringify({ type: "quotes", quotes: [b], step: 11 }));
});

test("SseTransport with an empty watchlist opens no stream", (t) => {
  const sources = installEventSource(t);
  fakeTimers(t);
  const { calls, handlers, lastStatus } = recorder();
  new SseTransport(handlers, { symbols: [] }).start();
  assert.equal(sources.length, 0);
  assert.equal(calls.request, 0);
  assert.deepEqual(lastStatus(), ["live", "Server-Sent Events (watchlist empty)"]);
});

test("SseTransport leaves a dropped stream to the browser's own reconnect (Last-Event-ID), saying 'reconnecting'", (t) => {
  const sources = installEventSource(t);
  const timers = fakeTimers(t);
  const { calls, handlers, lastStatus } = recorder();
  new SseTransport(handlers).start();
  sources[0].serverOpens();
  sources[0].fails({ closed: false });
  assert.deepEqual(lastStatus(), ["reconnecting", "Server-Sent Events"]);
  assert.equal(calls.request, 2, "the browser's reconnect is a request");
  assert.equal(sources.length, 1);
  assert.deepEqual(timers.delays(), [SILENCE_MS], "only the silence watchdog is pending");
});

test("SseTransport reopens a stream the browser gave up on (a non-200 answer) after a growing backoff", async (t) => {
  const sources = installEventSource(t);
  const timers = fakeTimers(t);
  t.mock.method(Math, "random", () => 1);
  const requests = fakeFetch(t, [response(502), new TypeError("Failed to fetch")]);
  const { handlers, lastStatus } = recorder();
  new SseTransport(handlers, { symbols: ["AAPL"] }).start();
  sources[0].serverOpens();
  sources[0].fails({ closed: true });
  await settle();
  assert.equal(requests[0].url, "/api/quotes/stream/?symbols=AAPL", "asked once more, to read the answer");
  assert.deepEqual(lastStatus(), ["reconnecting", "Server-Sent Events, retry in 0.5 s"]);
  assert.deepEqual(timers.delays(), [500], "the silence watchdog is off while waiting");
  timers.fire();
  assert.equal(sources.length, 2);
  assert.equal(sources[1].url, "/api/quotes/stream/?symbols=AAPL");
  assert.deepEqual(lastStatus(), ["reconnecting", "Server-Sent Events"], "still reconnecting until the stream opens");
  sources[1].fails({ closed: true });
  await settle();
  assert.deepEqual(timers.delays(), [1000]);
});

test("SseTransport shows the server's refusal (an unknown symbol) and waits until the symbols change", async (t) => {
  const sources = installEventSource(t);
  const timers = fakeTimers(t);
  const refusal = { type: "error", code: "unknown_symbol", message: "Unknown symbol(s): NOPE.", symbols: ["NOPE"] };
  fakeFetch(t, [response(400, refusal)]);
  const { calls, handlers, lastStatus } = recorder();
  const transport = new SseTransport(handlers, { symbols: ["AAPL", "NOPE"], failFast: true });
  transport.start();
  sources[0].fails({ closed: true });
  await settle();
  assert.deepEqual(calls.error, [refusal]);
  assert.deepEqual(lastStatus(), ["error", "Unknown symbol(s): NOPE."]);
  assert.deepEqual(calls.failed, [], "a refusal is not a blocked transport: no fallback");
  assert.deepEqual(timers.delays(), [], "and no retry");
  transport.setSymbols(["AAPL"]);
  assert.equal(sources.length, 2);
  assert.equal(sources[1].url, "/api/quotes/stream/?symbols=AAPL");
});

test("SseTransport asks for movers in its URL, hands movers and delisted events on, and reopens for a new count", (t) => {
  const sources = installEventSource(t);
  fakeTimers(t);
  const { calls, handlers } = recorder();
  const transport = new SseTransport(handlers, { symbols: ["AAPL", "XYZ"], movers: 10 });
  transport.start();
  assert.equal(sources[0].url, "/api/quotes/stream/?symbols=AAPL%2CXYZ&movers=10");
  const movers = { type: "movers", step: 3, listed: 2, gainers: [], losers: [] };
  sources[0].serverSends("movers", 3, movers);
  sources[0].serverSends("delisted", 4, { type: "delisted", step: 4, symbols: ["XYZ"] });
  assert.deepEqual(calls.movers, [movers]);
  assert.deepEqual(calls.delisted, [["XYZ"]]);
  assert.deepEqual(transport.symbols, ["AAPL"], "the server dropped it from the stream");
  transport.setMovers(0);
  assert.equal(sources[1].url, "/api/quotes/stream/?symbols=AAPL");
  transport.setSymbols(["AAPL"]);
  assert.equal(sources.length, 2, "the same symbols: the stream stays");
});

test("SseTransport with failFast reports a stream that fails before any snapshot as failed", (t) => {
  const sources = installEventSource(t);
  const timers = fakeTimers(t);
  const { calls, handlers } = recorder();
  new SseTransport(handlers, { failFast: true }).start();
  sources[0].fails({ closed: false });
  assert.deepEqual(calls.failed, ["event stream failed before any data"]);
  assert.equal(sources[0].readyState, FakeEventSource.CLOSED);
  assert.deepEqual(timers.delays(), []);
});

test("SseTransport reopens a stream silent for silenceMs, and a new symbol set or a resync reopens it too", (t) => {
  const sources = installEventSource(t);
  const timers = fakeTimers(t);
  const { calls, handlers } = recorder();
  const transport = new SseTransport(handlers, { silenceMs: 3000 });
  transport.start();
  sources[0].serverOpens();
  timers.fire();
  assert.equal(sources[0].readyState, FakeEventSource.CLOSED);
  assert.equal(sources.length, 2);
  assert.deepEqual(calls.status.slice(-2), [
    ["reconnecting", "Server-Sent Events silent"],
    ["connecting", "Server-Sent Events"],
  ]);
  transport.setSymbols(["TSLA"]);
  assert.equal(sources[1].readyState, FakeEventSource.CLOSED);
  assert.equal(sources[2].url, "/api/quotes/stream/?symbols=TSLA");
  transport.resync(["TSLA"]);
  assert.equal(sources.length, 4);
  transport.stop();
  assert.equal(sources[3].readyState, FakeEventSource.CLOSED);
  sources[3].fails({ closed: true });
  assert.equal(sources.length, 4, "a stopped transport does not reopen");
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

function response(status, body = null, etag = null, headers = {}) {
  const named = { ...Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v])), etag };
  return {
    status,
    ok: status >= 200 && status < 300,
    headers: { get: (name) => named[name.toLowerCase()] ?? null },
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
  const requests = fakeFetch(t, [response(502), response(200, { quotes: [], step: 1 })]);
  const { calls, handlers, lastStatus } = recorder();
  const transport = new PollingTransport(handlers, { interval: 1000 });
  transport.start();
  await settle();
  assert.deepEqual(lastStatus(), ["reconnecting", "HTTP polling failed (HTTP 502)"]);
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

test("PollingTransport reports each request and its answer through traffic", async (t) => {
  const timers = fakeTimers(t);
  const answer = response(200, { quotes: [], step: 1 }, '"v1"');
  fakeFetch(t, [answer, response(304)]);
  const { calls, handlers } = recorder();
  const transport = new PollingTransport(handlers, { symbols: ["AAPL"] });
  transport.start();
  await settle();
  timers.fire();
  await settle();
  assert.deepEqual(calls.traffic[0], {
    kind: "http",
    path: "/api/quotes/?symbols=AAPL",
    headers: {},
    response: answer,
    text: JSON.stringify({ quotes: [], step: 1 }),
  });
  assert.deepEqual(calls.traffic[1].headers, { "If-None-Match": '"v1"' });
  transport.stop();
});

test("PollingTransport stops on a refusal (400 unknown_symbol), shows the server's message, and resumes for new symbols", async (t) => {
  const timers = fakeTimers(t);
  const refusal = { type: "error", code: "unknown_symbol", message: "Unknown symbol(s): XYZ.", symbols: ["XYZ"] };
  const requests = fakeFetch(t, [response(400, refusal), response(200, { quotes: [], step: 2 })]);
  const { calls, handlers, lastStatus } = recorder();
  const transport = new PollingTransport(handlers, { symbols: ["AAPL", "XYZ"] });
  transport.start();
  await settle();
  assert.deepEqual(calls.error, [refusal]);
  assert.deepEqual(lastStatus(), ["error", "Unknown symbol(s): XYZ."]);
  assert.deepEqual(timers.delays(), [], "no retry: the same request would be refused again");
  transport.setSymbols(["AAPL"]);
  timers.fire();
  await settle();
  assert.equal(requests[1].url, "/api/quotes/?symbols=AAPL");
  assert.equal(calls.snapshot.length, 1);
  transport.stop();
});

test("PollingTransport passes the session of each answer on", async (t) => {
  fakeTimers(t);
  const session = { state: "closed", until: 99 };
  fakeFetch(t, [response(200, { quotes: [], step: 1, session })]);
  const { calls, handlers } = recorder();
  const transport = new PollingTransport(handlers, { symbols: ["AAPL"] });
  transport.start();
  await settle();
  assert.deepEqual(calls.session, [session]);
  transport.stop();
});

test("PollingTransport with movers polls /api/movers/ beside the quotes, and stops it with the transport", async (t) => {
  const timers = fakeTimers(t);
  const movers = { step: 4, listed: 30, gainers: [], losers: [] };
  const requests = fakeFetch(t, [response(200, { quotes: [], step: 1 }), response(200, movers, '"m1"')]);
  const { calls, handlers } = recorder();
  const transport = new PollingTransport(handlers, { symbols: ["AAPL"], movers: 5 });
  transport.start();
  await settle();
  assert.deepEqual(
    requests.map((r) => r.url),
    ["/api/quotes/?symbols=AAPL", "/api/movers/?count=5"],
  );
  assert.deepEqual(calls.movers, [{ type: "movers", ...movers }]);
  assert.deepEqual(timers.delays(), [1000, 1000]);
  transport.stop();
  assert.deepEqual(timers.delays(), []);
});

// --- MoversPoll -------------------------------------------------------------------

test("MoversPoll asks every second with the ETag; a 304 hands nothing on; failures keep the pace", async (t) => {
  const timers = fakeTimers(t);
  const movers = { step: 4, listed: 30, gainers: [{ symbol: "AAPL" }], losers: [] };
  const requests = fakeFetch(t, [response(200, movers, '"m1"'), response(304), new TypeError("Failed to fetch")]);
  const { calls, handlers } = recorder();
  const poll = new MoversPoll(handlers, { count: 10 });
  poll.start();
  for (let i = 0; i < 2; i++) {
    await settle();
    timers.fire();
  }
  await settle();
  assert.deepEqual(requests[1], { url: "/api/movers/?count=10", headers: { "If-None-Match": '"m1"' }, cache: "no-store" });
  assert.deepEqual(calls.movers, [{ type: "movers", ...movers }]);
  assert.equal(calls.request, 3);
  assert.deepEqual(timers.delays(), [1000]);
  poll.stop();
  assert.deepEqual(timers.delays(), []);
});

// --- LongPollTransport ---------------------------------------------------------

test("LongPollTransport stops on a refusal and asks for the full picture of the new symbols", async (t) => {
  const timers = fakeTimers(t);
  const refusal = { type: "error", code: "unknown_symbol", message: "Unknown symbol(s): XYZ.", symbols: ["XYZ"] };
  const requests = fakeFetch(t, [
    response(200, { quotes: [], step: 7 }),
    response(400, refusal),
    response(200, { quotes: [], step: 8 }),
  ]);
  const { calls, handlers, lastStatus } = recorder();
  const transport = new LongPollTransport(handlers, { symbols: ["AAPL", "XYZ"], failFast: true });
  transport.start();
  await settle();
  timers.fire();
  await settle();
  assert.deepEqual(lastStatus(), ["error", "Unknown symbol(s): XYZ."]);
  assert.deepEqual(calls.error, [refusal]);
  assert.deepEqual(timers.delays(), []);
  transport.setSymbols(["AAPL"]);
  timers.fire();
  await settle();
  assert.equal(requests[2].url, "/api/quotes/?symbols=AAPL");
  assert.deepEqual(calls.failed, []);
  transport.stop();
});

test("LongPollTransport asks for the full picture first, then waits at the server for changes after its step", async (t) => {
  const timers = fakeTimers(t);
  const a = { symbol: "AAPL", seq: 3, price: 100 };
  const b = { symbol: "AAPL", seq: 5, price: 101 };
  const requests = fakeFetch(t, [
    response(200, { quotes: [a], step: 7, feed: "live" }),
    response(200, { quotes: [b], step: 9, feed: "live" }),
    response(200, { quotes: [], step: 9, feed: "interrupted" }),
  ]);
  const { calls, handlers, lastStatus } = recorder();
  const transport = new LongPollTransport(handlers, { symbols: ["AAPL"], wait: 20 });
  transport.start();
  assert.deepEqual(calls.status[0], ["connecting", "long-polling"]);
  for (let i = 0; i < 2; i++) {
    await settle();
    timers.fire();
  }
  await settle();
  assert.deepEqual(
    requests.map((r) => r.url),
    ["/api/quotes/?symbols=AAPL", "/api/quotes/?symbols=AAPL&since=7&wait=20", "/api/quotes/?symbols=AAPL&since=9&wait=20"],
  );
  assert.deepEqual(calls.snapshot, [[[a], 7], [[b], 9]], "an answer without quotes (the wait ran out) is no snapshot");
  assert.deepEqual(calls.feedState, ["live", "live", "interrupted"]);
  assert.deepEqual(lastStatus(), ["live", "long-polling"]);
  assert.deepEqual(timers.delays(), [0], "the next request goes out at once");
  transport.stop();
});

test("LongPollTransport.resync aborts the waiting request and asks for the full picture once", async (t) => {
  const timers = fakeTimers(t);
  const requests = [];
  const answers = [{ quotes: [], step: 7 }, null, { quotes: [], step: 8 }, null];
  t.mock.method(globalThis, "fetch", (url, init) => {
    requests.push(url);
    const body = answers.shift();
    if (body) return Promise.resolve(response(200, body));
    // A long-poll that waits until it is aborted.
    return new Promise((_, reject) =>
      init.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError"))),
    );
  });
  const { calls, handlers } = recorder();
  const transport = new LongPollTransport(handlers);
  transport.start();
  await settle();
  timers.fire(); // the waiting request (since=7)
  await settle();
  transport.resync(["AAPL"]);
  await settle();
  assert.deepEqual(timers.delays(), [0]);
  timers.fire(); // the full picture
  await settle();
  timers.fire(); // waiting again, after the full picture's step
  await settle();
  assert.deepEqual(requests, ["/api/quotes/", "/api/quotes/?since=7&wait=25", "/api/quotes/", "/api/quotes/?since=8&wait=25"]);
  assert.equal(calls.snapshot.length, 2);
  assert.deepEqual(calls.status.filter(([state]) => state === "reconnecting"), [], "an abort on purpose is no failure");
  transport.stop();
});

test("LongPollTransport backs off after a failed request and says why", async (t) => {
  const timers = fakeTimers(t);
  t.mock.method(Math, "random", () => 1);
  fakeFetch(t, [response(502), new TypeError("Failed to fetch"), response(200, { quotes: [], step: 1 })]);
  const { calls, handlers, lastStatus } = recorder();
  const transport = new LongPollTransport(handlers);
  transport.start();
  await settle();
  assert.deepEqual(lastStatus(), ["reconnecting", "long-polling failed (HTTP 502)"]);
  assert.deepEqual(timers.delays(), [500]);
  timers.fire();
  await settle();
  assert.deepEqual(lastStatus(), ["reconnecting", "long-polling failed (Failed to fetch)"]);
  assert.deepEqual(timers.delays(), [1000]);
  timers.fire();
  await settle();
  assert.deepEqual(lastStatus(), ["live", "long-polling"]);
  assert.deepEqual(calls.failed, []);
  transport.stop();
});

test("LongPollTransport with failFast reports a request that fails before any answer as failed", async (t) => {
  const timers = fakeTimers(t);
  fakeFetch(t, [new TypeError("Failed to fetch")]);
  const { calls, handlers } = recorder();
  new LongPollTransport(handlers, { failFast: true }).start();
  await settle();
  assert.deepEqual(calls.failed, ["long-polling failed (Failed to fetch)"]);
  assert.deepEqual(timers.delays(), []);
});

test("LongPollTransport with an empty watchlist waits without fetching and counts as working", async (t) => {
  const timers = fakeTimers(t);
  const requests = fakeFetch(t, []);
  const { calls, handlers, lastStatus } = recorder();
  const transport = new LongPollTransport(handlers, { symbols: [], failFast: true });
  transport.start();
  await settle();
  assert.equal(requests.length, 0);
  assert.deepEqual(lastStatus(), ["live", "long-polling (watchlist empty)"]);
  assert.deepEqual(timers.delays(), [1000], "no connect timer: an empty watchlist is not a failure");
  transport.stop();
});

// --- a full server: close 1013, HTTP 503 with Retry-After (docs/protocol.md, "Admission control") ---

test("busyDelay waits the seconds asked for plus up to half again at random; 5 s when none; at most 60 s", () => {
  assert.equal(busyDelay(5, { random: () => 0 }), 5000);
  assert.equal(busyDelay(5, { random: () => 1 }), 7500);
  assert.equal(busyDelay(2, { random: () => 0.5 }), 2500);
  assert.equal(busyDelay(null, { random: () => 0 }), 5000);
  assert.equal(busyDelay(0, { random: () => 0 }), 5000);
  assert.equal(busyDelay(86400, { random: () => 0 }), 60000);
});

test("retryAfterSeconds reads delta-seconds and HTTP dates, and nothing else", () => {
  assert.equal(retryAfterSeconds("5"), 5);
  assert.equal(retryAfterSeconds(" 12 "), 12);
  const now = Date.parse("Wed, 02 Dec 2026 05:00:00 GMT");
  assert.equal(retryAfterSeconds("Wed, 02 Dec 2026 05:00:30 GMT", now), 30);
  assert.equal(retryAfterSeconds("Wed, 02 Dec 2026 04:00:00 GMT", now), 0);
  assert.equal(retryAfterSeconds(null), null);
  assert.equal(retryAfterSeconds("soon"), null);
});

test("closeRetrySeconds reads the wait from a 1013 close's reason", () => {
  assert.equal(closeRetrySeconds("server full: try again in 5 s"), 5);
  assert.equal(closeRetrySeconds("try again in 12 s"), 12);
  assert.equal(closeRetrySeconds(""), null);
  assert.equal(closeRetrySeconds(undefined), null);
});

test("WebSocketTransport closed with 1013 before any data says 'busy', waits what the server asked, and does not give up", (t) => {
  const sockets = installWebSocket(t);
  const timers = fakeTimers(t);
  t.mock.method(Math, "random", () => 0.5);
  const { calls, handlers, lastStatus } = recorder();
  const busy = [];
  handlers.busy = (delay) => busy.push(delay);
  const transport = new WebSocketTransport(handlers, { url: WS_URL, failFast: true });
  transport.start();
  sockets[0].serverOpens();
  sockets[0].serverCloses(1013, "server full: try again in 8 s");
  assert.deepEqual(calls.failed, [], "a full server is not a blocked transport");
  assert.deepEqual(lastStatus(), ["busy", "WebSocket: server busy, retry in 10.0 s"]);
  assert.deepEqual(busy, [10000]);
  assert.deepEqual(timers.delays(), [10000], "only the retry: no connect deadline, no silence watchdog");
  timers.fire();
  assert.equal(sockets.length, 2, "tried again");
  assert.deepEqual(timers.delays(), [5000], "the connect deadline again, for the new try");
  sockets[1].serverOpens();
  sockets[1].serverSends({ type: "snapshot", step: 3, quotes: [] });
  assert.deepEqual(lastStatus(), ["live", "WebSocket"]);
  assert.deepEqual(calls.failed, []);
  transport.stop();
});

test("WebSocketTransport closed with 1013 after it worked waits 5 s at least, not the short reconnect backoff", (t) => {
  const sockets = installWebSocket(t);
  const timers = fakeTimers(t);
  t.mock.method(Math, "random", () => 0);
  const { handlers, lastStatus } = recorder();
  new WebSocketTransport(handlers, { url: WS_URL }).start();
  sockets[0].serverOpens();
  sockets[0].serverSends({ type: "snapshot", step: 1, quotes: [] });
  sockets[0].serverCloses(1013);
  assert.equal(lastStatus()[0], "busy");
  assert.deepEqual(timers.delays(), [5000]);
});

test("SseTransport answered 503 with Retry-After says 'busy' and reopens after it, without giving up", async (t) => {
  const sources = installEventSource(t);
  const timers = fakeTimers(t);
  t.mock.method(Math, "random", () => 0);
  fakeFetch(t, [response(503, { type: "error", code: "server_full", message: "full" }, null, { "Retry-After": "7" })]);
  const { calls, handlers, lastStatus } = recorder();
  new SseTransport(handlers, { symbols: ["AAPL"], failFast: true }).start();
  sources[0].fails({ closed: true });
  await settle();
  assert.deepEqual(calls.failed, []);
  assert.deepEqual(lastStatus(), ["busy", "Server-Sent Events: server busy, retry in 7.0 s"]);
  assert.deepEqual(timers.delays(), [7000]);
  timers.fire();
  assert.equal(sources.length, 2);
});

test("LongPollTransport answered 503 says 'busy', waits Retry-After, and then polls again", async (t) => {
  const timers = fakeTimers(t);
  t.mock.method(Math, "random", () => 0);
  fakeFetch(t, [
    response(503, { type: "error", code: "server_full", message: "full" }, null, { "Retry-After": "5" }),
    response(200, { quotes: [], step: 4 }),
  ]);
  const { calls, handlers, lastStatus } = recorder();
  const transport = new LongPollTransport(handlers, { failFast: true });
  transport.start();
  await settle();
  assert.deepEqual(calls.failed, []);
  assert.deepEqual(lastStatus(), ["busy", "long-polling: server busy, retry in 5.0 s"]);
  assert.deepEqual(timers.delays(), [5000]);
  timers.fire();
  await settle();
  assert.deepEqual(lastStatus(), ["live", "long-polling"]);
  transport.stop();
});

test("the chain stays on WebSocket while the server is full, and gets in once it has room", (t) => {
  const sockets = installWebSocket(t);
  const timers = fakeTimers(t);
  t.mock.method(Math, "random", () => 0);
  const seen = [];
  const handlers = {
    status: (state, detail, transport) => seen.push([state, transport]),
    snapshot: () => seen.push(["snapshot"]),
    quotes: () => {},
    request: () => {},
  };
  const chain = new TransportChain(handlers, { transportOptions: { url: WS_URL } });
  chain.start();
  for (let i = 0; i < 3; i++) {
    sockets[i].serverOpens();
    sockets[i].serverCloses(1013, "server full: try again in 5 s");
    assert.equal(chain.transport, "websocket", "a full server is no reason to fall back");
    assert.deepEqual(seen.at(-1), ["busy", "websocket"]);
    timers.fireAfter(5000);
  }
  sockets[3].serverOpens();
  sockets[3].serverSends({ type: "snapshot", step: 9, quotes: [] });
  assert.deepEqual(seen.at(-1), ["snapshot"]);
  assert.equal(chain.transport, "websocket");
  assert.equal(sockets.length, 4, "one socket at a time, no other transport tried");
  chain.stop();
});

test("an upgrade probe told the server is full is dropped, and the upgrade is tried again later", async (t) => {
  const sockets = installWebSocket(t);
  const sources = installEventSource(t);
  const timers = fakeTimers(t);
  t.mock.method(Math, "random", () => 0);
  const seen = [];
  const handlers = { status: (state, detail, transport) => seen.push([state, transport]), snapshot() {}, quotes() {}, request() {} };
  const chain = new TransportChain(handlers, { symbols: ["AAPL"], upgradeMs: 30000, transportOptions: { url: WS_URL } });
  chain.start();
  sockets[0].connectionDrops(); // a proxy that blocks WebSocket: the chain falls back to SSE
  assert.equal(chain.transport, "sse");
  sources[0].serverOpens();
  sources[0].serverSends("snapshot", 1, { type: "snapshot", step: 1, quotes: [] });
  timers.fireAfter(30000); // the upgrade probe: a WebSocket beside the live stream
  assert.equal(sockets.length, 2);
  sockets[1].serverOpens();
  sockets[1].serverCloses(1013, "server full: try again in 5 s");
  assert.equal(chain.transport, "sse", "the live stream is kept");
  assert.equal(chain.probe, null);
  assert.ok(!seen.some(([state]) => state === "busy"), "the probe's state is not the page's");
  assert.ok(timers.delays().includes(30000), "the next upgrade is scheduled");
  chain.stop();
});
