// Four ways to get quotes: pushed over a WebSocket or Server-Sent Events, or
// pulled by long-polling or polling. Each is a Transport: the base class owns
// the lifecycle (start and stop, retries with backoff, fail-fast, the silence
// watchdog), and each subclass only says how it connects and reads.
//
// All call the same handlers: status(state, detail), snapshot(quotes, step),
// quotes(quotes, step), request() (an HTTP request or WebSocket frame sent),
// and, when created with failFast, failed(reason) if the transport never
// delivered anything. Optional: feedState("live" | "interrupted"), the server's
// word on the market feed (heartbeats, long-poll answers); session({state,
// until}), the market session (heartbeats, snapshots, poll answers); movers(frame),
// the whole market's gainers and losers (with the `movers` option); delisted(symbols),
// symbols the market delisted, which left the subscription; personal(frame), a signed-in user's
// own frame ({type: "alert" | "watchlist" | "signed_out", ...}, WebSocket and SSE only); error(frame), the
// server's error frame ({code, message, symbols?}: a refused request is not
// retried, see refused()); and traffic(record),
// what crossed the wire as the transport saw it, for tools that measure it
// (the Lab, wire.js):
//   {kind: "websocket", direction: "in" | "out", text,   one frame; for one received on the delta format,
//    protocol, extensions, whole}                         `whole`: the same frame's JSON with whole quotes
//   {kind: "sse", event, id, text}                       one event received
//   {kind: "http", path, headers, response, text}        one request and its answer

import { DELTA_PROTOCOL, DeltaBook } from "./delta.js";

// A transport that fails fast gives up after this long without a snapshot.
// At most this many symbols in one subscribe message or ?symbols= list (protocol.MAX_SYMBOLS_PER_MESSAGE).
export const MAX_SYMBOLS_PER_MESSAGE = 100;
// A signed-in user's own frames (docs/protocol.md, "Personal frames"): pushed transports only.
export const PERSONAL_TYPES = ["alert", "watchlist", "signed_out"];
const CONNECT_TIMEOUT_MS = 5000;
// How long a push connection may stay silent (heartbeats included) before it is
// taken for dead (half-open) and opened again. The page passes the server's
// settings.TICKER_CLIENT_SILENCE_S (config.js); this default, the setting's own,
// serves where there is no page (unit tests).
export const SILENCE_MS = 12000;

/** Calls onSilence() when kick() has not been called for `ms`. */
class Watchdog {
  constructor(onSilence, ms = SILENCE_MS) {
    this.onSilence = onSilence;
    this.ms = ms;
    this.timer = null;
  }

  kick() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.onSilence(), this.ms);
  }

  clear() {
    clearTimeout(this.timer);
  }
}

/** ws: or wss: to match the page, so the socket is encrypted whenever the page is. */
export function wsUrl(loc = window.location, path = "/ws/quotes/") {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}${path}`;
}

// RFC 6455 close code 1013, "try again later": the server is full (its connection cap,
// TICKER_MAX_CONNECTIONS) or has no quotes yet. The HTTP transports get a 503 with Retry-After instead.
export const TRY_AGAIN_LATER = 1013;
// The wait a busy server asks for when its answer names none (the server's own default, 5 s), and the
// most the page waits whatever the answer says (a proxy's odd Retry-After must not freeze the page).
const BUSY_RETRY_S = 5;
const BUSY_MAX_S = 60;

/**
 * The wait after a "server busy" answer: the seconds it asked for (Retry-After, or the 1013 close's
 * reason), plus up to half as much again at random, so clients turned away together do not come
 * back together.
 */
export function busyDelay(retryAfterS, { random = Math.random } = {}) {
  const seconds = Number.isFinite(retryAfterS) && retryAfterS > 0 ? Math.min(retryAfterS, BUSY_MAX_S) : BUSY_RETRY_S;
  return Math.round(seconds * 1000 * (1 + random() / 2));
}

/** Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 10.2.3); null when absent or bad. */
export function retryAfterSeconds(value, now = Date.now()) {
  if (value == null || value === "") return null;
  if (/^\s*\d+\s*$/.test(value)) return Number(value);
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, (at - now) / 1000);
}

/** Seconds from a 1013 close's reason ("server full: try again in 5 s", docs/protocol.md); null without one. */
export function closeRetrySeconds(reason) {
  const match = /try again in (\d+) s/.exec(reason ?? "");
  return match ? Number(match[1]) : null;
}

/** Exponential backoff with full jitter: a random wait in [0, min(max, base * 2^attempt)]. */
export function backoffDelay(attempt, { base = 500, max = 5000, random = Math.random } = {}) {
  return Math.round(random() * Math.min(max, base * 2 ** attempt));
}

/**
 * The query string of an HTTP transport, "?" included ("" when there is none):
 * `symbols` as the server reads it (absent for ["*"], all), then `params`.
 */
export function quotesQuery(symbols, params = {}) {
  const query = new URLSearchParams();
  if (!symbols.includes("*")) query.set("symbols", symbols.join(","));
  for (const [name, value] of Object.entries(params)) query.set(name, String(value));
  const text = query.toString();
  return text ? `?${text}` : "";
}

export function sameSymbols(a, b) {
  if (a.length !== b.length) return false;
  const set = new Set(a);
  return b.every((s) => set.has(s));
}

/** The server's error frame in a refused HTTP answer, or a stand-in when the body is not one. */
export function errorFrame(status, text) {
  try {
    const frame = JSON.parse(text);
    if (frame && typeof frame.code === "string") return frame;
  } catch {
    // not JSON: a proxy's page
  }
  return { type: "error", code: `http_${status}`, message: `HTTP ${status}` };
}

/** A 4xx answer: the request itself is wrong, so the same request would fail again. */
export function isRefusal(status) {
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

/**
 * The lifecycle every transport shares. A subclass implements open() (connect
 * and start reading) and close() (drop the connection, quietly), and calls:
 * connected() when a push connection is up, heard() on every message (which
 * keeps the silence watchdog quiet; silent() is then called after `silenceMs`
 * without one), delivered() on its first snapshot, and retry(reason) when the
 * connection is lost.
 *
 * Fail-fast: a transport "works" once it has delivered a snapshot. Until then,
 * with failFast set, a lost connection or CONNECT_TIMEOUT_MS without data is
 * reported as failed(reason) so a chain can fall back; after that the
 * transport reconnects on its own (a restart is not a blocked transport).
 */
export class Transport {
  /** The name the status detail gives this transport. */
  static label = "transport";

  constructor(handlers, { symbols = ["*"], movers = 0, failFast = false, silenceMs = SILENCE_MS } = {}) {
    this.handlers = handlers;
    this.label = this.constructor.label;
    this.symbols = symbols;
    // How many gainers and losers to follow (0: none); docs/protocol.md, "Movers".
    this.movers = movers;
    // The server's error frame for a request it refused (HTTP 4xx): not retried until setSymbols().
    this.refusal = null;
    this.failFast = failFast;
    this.worked = false;
    this.stopped = false;
    this.attempt = 0;
    this.timer = null;
    this.connectTimer = null;
    this.watchdog = new Watchdog(() => this.silent(), silenceMs);
  }

  /** Called to connect, by the page and again for every retry. */
  start() {
    this.stopped = false;
    this.handlers.status(this.attempt ? "reconnecting" : "connecting", this.label);
    clearTimeout(this.connectTimer);
    if (this.failFast && !this.worked) {
      this.connectTimer = setTimeout(() => this.giveUp("no data in time"), CONNECT_TIMEOUT_MS);
    }
    this.open();
  }

  /** Called when the page no longer wants this transport: after it, no handler is called again. */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.connectTimer);
    this.watchdog.clear();
    this.close();
  }

  /** Drop the connection and open a new one (which starts with a fresh snapshot). */
  restart() {
    if (this.stopped) return;
    this.close();
    this.start();
  }

  connected() {
    this.attempt = 0;
    this.watchdog.kick();
    this.handlers.status("live", this.label);
  }

  heard() {
    this.watchdog.kick();
  }

  delivered() {
    this.worked = true;
    clearTimeout(this.connectTimer);
  }

  /**
   * Called on a failure: with failFast, before any snapshot, stop and report
   * failed(reason). Returns true when it gave up (the caller must not retry).
   */
  giveUp(reason) {
    if (!this.failFast || this.worked || this.stopped) return false;
    this.stop();
    this.handlers.failed?.(reason);
    return true;
  }

  /** The wait before the next try after a failure (at least `floor` ms), or null when the transport gave up. */
  backoff(reason, floor = 0) {
    this.watchdog.clear();
    if (this.giveUp(reason)) return null;
    return Math.max(floor, backoffDelay(this.attempt++));
  }

  /** The connection is lost: open it again after a backoff, unless the transport gives up. */
  retry(reason) {
    const delay = this.backoff(reason);
    if (delay === null) return;
    this.handlers.status("reconnecting", `${this.label}, retry in ${(delay / 1000).toFixed(1)} s`);
    this.later(() => this.restart(), delay);
  }

  /**
   * The server is full or not ready (close 1013, or HTTP 503 with Retry-After; docs/protocol.md,
   * "Admission control"). That says nothing against this transport, so it is not a failure to fall
   * back from, even with failFast: wait what the server asked for (with jitter), saying so, then
   * open again. handlers.busy(delay) tells a chain (whose upgrade probe gives up instead).
   */
  busy(retryAfterS) {
    clearTimeout(this.connectTimer);
    this.watchdog.clear();
    const delay = busyDelay(retryAfterS);
    this.handlers.status("busy", `${this.label}: server busy, retry in ${(delay / 1000).toFixed(1)} s`);
    this.handlers.busy?.(delay);
    if (!this.stopped) this.later(() => this.restart(), delay);
  }

  /** Run fn after ms, unless stop() comes first. One such timer at a time. */
  later(fn, ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(fn, ms);
  }

  /** One server message, the same JSON over WebSocket and SSE (docs/protocol.md), to the handlers. */
  read(type, frame) {
    if (frame.session) this.handlers.session?.(frame.session);
    if (type === "snapshot") {
      this.delivered();
      this.handlers.snapshot(frame.quotes, frame.step);
    } else if (type === "quotes") this.handlers.quotes(frame.quotes, frame.step);
    else if (type === "heartbeat") this.handlers.feedState?.(frame.feed);
    else if (type === "movers") this.handlers.movers?.(frame);
    else if (PERSONAL_TYPES.includes(type)) this.handlers.personal?.(frame);
    else if (type === "delisted") {
      this.forget(frame.symbols);
      this.handlers.delisted?.(frame.symbols);
    } else if (type === "error") {
      // An unknown symbol was not subscribed: forget it, so a later setSymbols() asks for it again.
      if (frame.code === "unknown_symbol") this.forget(frame.symbols ?? []);
      if (this.handlers.error) this.handlers.error(frame);
      else console.warn("ticker server error", frame.code, frame.message);
    }
  }

  /** Symbols the server dropped from this connection's subscription (delisted, or unknown). */
  forget(symbols) {
    if (!this.symbols.includes("*")) this.symbols = this.symbols.filter((s) => !symbols.includes(s));
  }

  /**
   * The server refused the request (HTTP 4xx, with its error frame): asking again
   * would get the same answer, so the transport waits, saying why, until the page
   * changes what it asks for (setSymbols). It counts as working: the server answered.
   */
  refused(frame) {
    this.refusal = frame;
    this.delivered();
    this.watchdog.clear();
    this.handlers.status("error", frame.message || `${this.label} refused (${frame.code})`);
    this.handlers.error?.(frame);
  }

  /** Same symbols, and not waiting on a refusal: a setSymbols() that changes nothing. */
  unchanged(symbols) {
    return !this.refusal && sameSymbols(this.symbols, symbols);
  }

  /** Follow this many gainers and losers (0: none). */
  setMovers(count) {
    if (count === this.movers) return;
    this.movers = count;
    this.moversChanged();
  }

  moversChanged() {}

  /** Called by the watchdog; push transports that call heard() say what silence means. */
  silent() {}
}

/**
 * A WebSocket. It asks for the delta format (delta.js; `protocols: []` asks for none) and, when the server
 * agrees, makes whole quotes of what arrives, so its handlers get the same quotes as from any transport. The
 * browser negotiates permessage-deflate by itself: the page sees frames already inflated.
 */
export class WebSocketTransport extends Transport {
  static label = "WebSocket";

  constructor(handlers, { url = wsUrl(), protocols = [DELTA_PROTOCOL], ...options } = {}) {
    super(handlers, options);
    this.url = url;
    this.protocols = protocols;
    this.socket = null;
    this.deltas = null; // a DeltaBook while the open socket speaks the delta format
    this.awaiting = new Set(); // symbols whose delta could not be applied: a snapshot of them was asked for
  }

  open() {
    const socket = new WebSocket(this.url, this.protocols);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.deltas = socket.protocol === DELTA_PROTOCOL ? new DeltaBook() : null;
      this.awaiting.clear();
      this.connected();
      if (this.symbols.length) this.subscribe(this.symbols);
      else this.delivered();
      if (this.movers) this.send({ action: "movers", count: this.movers });
    });
    socket.addEventListener("message", (event) => {
      if (this.socket !== socket) return;
      this.heard();
      const frame = JSON.parse(event.data);
      const whole = this.deltas ? this.expand(frame) : null;
      this.handlers.traffic?.({
        kind: "websocket",
        direction: "in",
        text: event.data,
        protocol: socket.protocol,
        extensions: socket.extensions,
        whole: whole && JSON.stringify(whole),
      });
      this.read(frame.type, whole ?? frame);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket || this.stopped) return;
      this.socket = null;
      if (event.code === TRY_AGAIN_LATER) return this.busy(closeRetrySeconds(event.reason));
      this.retry("WebSocket closed before any data");
    });
  }

  close() {
    this.socket?.close(1000);
    this.socket = null;
  }

  /** No message, not even a heartbeat, for silenceMs: the connection is dead even if the browser has not noticed. */
  silent() {
    if (this.stopped || !this.socket) return;
    const socket = this.socket;
    this.socket = null;
    socket.close(4000, "no heartbeat");
    this.retry("WebSocket silent");
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) {
      const text = JSON.stringify(message);
      this.socket.send(text);
      this.handlers.request();
      this.handlers.traffic?.({ kind: "websocket", direction: "out", text });
    }
  }

  /** subscribe, at most MAX_SYMBOLS_PER_MESSAGE symbols a message (the server's limit). */
  subscribe(symbols) {
    for (let i = 0; i < symbols.length; i += MAX_SYMBOLS_PER_MESSAGE) {
      this.send({ action: "subscribe", symbols: symbols.slice(i, i + MAX_SYMBOLS_PER_MESSAGE) });
    }
  }

  /**
   * Follow a new set of symbols (["*"] for all). Between two lists only the
   * difference is sent: unsubscribe what left, subscribe what came (whose
   * snapshot holds just those symbols), so the others stream on untouched.
   */
  setSymbols(symbols) {
    if (sameSymbols(this.symbols, symbols)) return;
    const before = this.symbols;
    this.symbols = symbols;
    if (before.includes("*") || symbols.includes("*")) {
      this.send({ action: "unsubscribe", symbols: ["*"] });
      if (symbols.length) this.subscribe(symbols);
      return;
    }
    const gone = before.filter((s) => !symbols.includes(s));
    const added = symbols.filter((s) => !before.includes(s));
    for (let i = 0; i < gone.length; i += MAX_SYMBOLS_PER_MESSAGE) {
      this.send({ action: "unsubscribe", symbols: gone.slice(i, i + MAX_SYMBOLS_PER_MESSAGE) });
    }
    if (added.length) this.subscribe(added);
  }

  moversChanged() {
    this.send({ action: "movers", count: this.movers });
  }

  /** A seq gap was seen: ask again for these symbols, which answers with a snapshot. */
  resync(symbols) {
    this.subscribe(symbols);
  }

  /**
   * A frame of the delta format with whole quotes (null: not a quotes frame, read as it came). Symbols
   * whose delta does not apply are asked for again (a snapshot), once, and skipped until it comes.
   */
  expand(frame) {
    const deltas = this.deltas;
    const settled = (symbols) => symbols.forEach((symbol) => this.awaiting.delete(symbol));
    if (frame.type === "snapshot") {
      deltas.hold(frame.quotes);
      settled(frame.quotes.map((quote) => quote.symbol));
      return null;
    }
    if (frame.type === "delisted") {
      deltas.forget(frame.symbols);
      settled(frame.symbols);
    }
    if (frame.type === "error" && frame.code === "unknown_symbol") settled(frame.symbols ?? []);
    if (frame.type !== "quotes") return null;
    const { quotes, unapplied } = deltas.expand(frame.quotes);
    settled(quotes.map((quote) => quote.symbol)); // whole again, whatever made it so
    // A delta still in flight for a symbol the page has just dropped is no reason to subscribe it again.
    const wanted = (symbol) => this.symbols.includes("*") || this.symbols.includes(symbol);
    const ask = unapplied.filter((symbol) => wanted(symbol) && !this.awaiting.has(symbol));
    if (ask.length) {
      ask.forEach((symbol) => this.awaiting.add(symbol));
      this.resync(ask);
    }
    return { ...frame, quotes };
  }
}

/** Server-Sent Events: one long HTTP response; the browser reconnects with Last-Event-ID by itself. */
export class SseTransport extends Transport {
  static label = "Server-Sent Events";

  constructor(handlers, { url = "/api/quotes/stream/", ...options } = {}) {
    super(handlers, options);
    this.url = url;
    this.source = null;
  }

  open() {
    if (!this.symbols.length) {
      this.delivered();
      this.handlers.status("live", `${this.label} (watchlist empty)`);
      return;
    }
    const url = this.url + quotesQuery(this.symbols, this.movers ? { movers: this.movers } : {});
    const source = new EventSource(url);
    this.source = source;
    this.handlers.request();
    source.addEventListener("open", () => this.connected());
    for (const type of ["snapshot", "quotes", "heartbeat", "movers", "delisted", ...PERSONAL_TYPES]) {
      source.addEventListener(type, (event) => {
        this.heard();
        this.handlers.traffic?.({ kind: "sse", event: event.type, id: event.lastEventId, text: event.data });
        this.read(type, JSON.parse(event.data));
      });
    }
    source.addEventListener("error", () => {
      if (this.source !== source || this.stopped) return;
      const reason = "event stream failed before any data";
      // The browser gives up on a non-200 answer (a proxy's 502, a restart, a 400): ask why, then
      // wait on a refusal or retry ourselves.
      if (source.readyState === EventSource.CLOSED) return this.explain(source, url, reason);
      if (this.giveUp(reason)) return;
      // Otherwise EventSource retries by itself (the server asks for 1 s), resuming with Last-Event-ID.
      this.handlers.status("reconnecting", this.label);
      this.handlers.request();
    });
  }

  close() {
    this.source?.close();
    this.source = null;
  }

  /**
   * EventSource hides a failed answer's status and body, so the same URL is
   * asked once more with fetch: a 4xx carries the server's error frame (an
   * unknown symbol, a bad parameter), which no retry would cure.
   */
  async explain(source, url, reason) {
    const controller = new AbortController();
    let frame = null;
    let busyFor;
    try {
      const response = await fetch(url, { cache: "no-store", signal: controller.signal });
      if (isRefusal(response.status)) frame = errorFrame(response.status, await response.text());
      else if (response.status === 503) busyFor = retryAfterSeconds(response.headers.get("Retry-After"));
    } catch {
      // the network: retry below
    } finally {
      controller.abort(); // a 200 is a live stream: not read here
    }
    if (this.source !== source || this.stopped) return;
    this.source = null;
    if (frame) this.refused(frame);
    else if (busyFor !== undefined) this.busy(busyFor);
    else this.retry(reason);
  }

  /** No event, not even a heartbeat, for silenceMs: reopen the stream, which starts with a fresh snapshot. */
  silent() {
    if (this.stopped || !this.source) return;
    this.handlers.status("reconnecting", `${this.label} silent`);
    this.restart();
  }

  /** A new set of symbols: a new stream (?symbols= is fixed for a stream's life). */
  setSymbols(symbols) {
    if (this.unchanged(symbols)) return;
    this.symbols = symbols;
    this.refusal = null;
    this.restart();
  }

  moversChanged() {
    this.restart();
  }

  /** A gap: reopen the stream, which starts with a fresh snapshot. */
  resync() {
    this.restart();
  }
}

/**
 * A transport that pulls: one HTTP request after another. A subclass says what
 * one exchange is (exchange(), resolving to the wait before the next one) and
 * what to do with an empty watchlist (idle(), returning the wait).
 */
class PullTransport extends Transport {
  constructor(handlers, { moversUrl = "/api/movers/", ...options } = {}) {
    super(handlers, options);
    this.controller = null;
    // The shortest wait after a failed request.
    this.retryFloor = 0;
    this.moversUrl = moversUrl;
    this.moversPoll = null;
  }

  open() {
    this.poll();
    this.followMovers();
  }

  close() {
    this.controller?.abort();
    this.moversPoll?.stop();
    this.moversPoll = null;
  }

  /** Movers come by their own request every second (GET /api/movers/), beside the quotes' requests. */
  followMovers() {
    this.moversPoll?.stop();
    this.moversPoll = null;
    if (!this.movers || this.stopped) return;
    this.moversPoll = new MoversPoll(this.handlers, { url: this.moversUrl, count: this.movers });
    this.moversPoll.start();
  }

  moversChanged() {
    this.followMovers();
  }

  async poll() {
    if (this.stopped || this.refusal) return;
    let wait;
    try {
      wait = this.symbols.length ? await this.exchange() : this.idle();
      if (wait === null) return; // stopped while the answer came in, or refused
      this.attempt = 0;
    } catch (error) {
      if (this.stopped) return;
      // Aborted on purpose (a resync): ask again straight away.
      if (error.name === "AbortError") wait = 0;
      else {
        const reason = `${this.label} failed (${error.message})`;
        wait = this.backoff(reason, this.retryFloor);
        if (wait === null) return;
        this.handlers.status("reconnecting", reason);
      }
    }
    this.later(() => this.poll(), wait);
  }

  /** One GET: resolves to {response, text}, or null if the transport was stopped meanwhile. */
  async fetchText(path, headers = {}) {
    this.controller = new AbortController();
    this.handlers.request();
    const response = await fetch(path, { headers, cache: "no-store", signal: this.controller.signal });
    if (this.stopped) return null;
    const text = await response.text();
    this.handlers.traffic?.({ kind: "http", path, headers, response, text });
    // stop() may have been called while the body was read (a switch to WebSocket):
    // a stopped transport must not touch the page any more.
    if (this.stopped) return null;
    if (isRefusal(response.status)) {
      this.refused(errorFrame(response.status, text));
      return null;
    }
    if (response.status === 503) {
      this.busy(retryAfterSeconds(response.headers.get("Retry-After")));
      return null;
    }
    return { response, text };
  }

  /** A new set of symbols: the next request asks for them (and one waiting on a refusal asks again). */
  setSymbols(symbols) {
    if (this.unchanged(symbols)) return;
    this.symbols = symbols;
    this.symbolsChanged();
    if (this.refusal) {
      this.refusal = null;
      if (!this.stopped) this.later(() => this.poll(), 0);
    }
  }

  symbolsChanged() {}
}

/**
 * The movers for the pull transports: GET /api/movers/?count=N every `interval`
 * ms with the ETag (a 304 when they did not change), each answer handed to
 * handlers.movers as the push transports' movers frame. Failures are retried at
 * the same pace: the quotes' transport reports the connection's state.
 */
export class MoversPoll {
  constructor(handlers, { url = "/api/movers/", count = 10, interval = 1000 } = {}) {
    this.handlers = handlers;
    this.url = url;
    this.count = count;
    this.interval = interval;
    this.etag = null;
    this.timer = null;
    this.controller = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.fetch();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.controller?.abort();
  }

  async fetch() {
    if (this.stopped) return;
    this.controller = new AbortController();
    const headers = this.etag ? { "If-None-Match": this.etag } : {};
    try {
      this.handlers.request();
      const path = `${this.url}?count=${this.count}`;
      const response = await fetch(path, { headers, cache: "no-store", signal: this.controller.signal });
      if (this.stopped) return;
      if (response.status === 200) {
        this.etag = response.headers.get("ETag");
        const text = await response.text();
        if (this.stopped) return;
        this.handlers.traffic?.({ kind: "http", path, headers, response, text });
        this.handlers.movers?.({ type: "movers", ...JSON.parse(text) });
      }
    } catch {
      if (this.stopped) return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.fetch(), this.interval);
  }
}

/** Long-polling: each request waits at the server until something changes after `since`. */
export class LongPollTransport extends PullTransport {
  static label = "long-polling";

  constructor(handlers, { url = "/api/quotes/", wait = 25, ...options } = {}) {
    super(handlers, options);
    this.url = url;
    this.wait = wait;
    this.since = null;
    this.resyncing = false;
  }

  idle() {
    this.delivered();
    this.handlers.status("live", `${this.label} (watchlist empty)`);
    return 1000;
  }

  async exchange() {
    this.resyncing = false;
    // The first request (and a resync) is a plain poll: the full picture and its step.
    const waiting = this.since === null ? {} : { since: this.since, wait: this.wait };
    const answer = await this.fetchText(this.url + quotesQuery(this.symbols, waiting));
    if (!answer) return null;
    if (!answer.response.ok) throw new Error(`HTTP ${answer.response.status}`);
    const body = JSON.parse(answer.text);
    // An answer holds the latest quote of each changed symbol: when a round
    // trip spans several steps, seq skips on purpose, so it is a snapshot.
    if (this.since === null) this.delivered();
    if (body.quotes.length || this.since === null) this.handlers.snapshot(body.quotes, body.step);
    if (body.feed) this.handlers.feedState?.(body.feed);
    if (body.session) this.handlers.session?.(body.session);
    // A resync() during this request asked for a full answer next: keep since at null.
    if (!this.resyncing) this.since = body.step;
    this.handlers.status("live", this.label);
    return 0;
  }

  symbolsChanged() {
    this.resync();
  }

  resync() {
    this.since = null;
    this.resyncing = true;
    this.controller?.abort();
  }
}

/** Polling: the baseline, one plain GET every `interval` ms, with the ETag so an unchanged answer is a 304. */
export class PollingTransport extends PullTransport {
  static label = "HTTP polling";

  // Polling is the last resort: it never gives up, so it takes no failFast.
  constructor(handlers, { url = "/api/quotes/", interval = 1000, ...options } = {}) {
    super(handlers, { ...options, failFast: false });
    this.url = url;
    this.interval = interval;
    this.retryFloor = interval;
    this.etag = null;
  }

  idle() {
    this.handlers.status("polling", `${this.label} (watchlist empty)`);
    return this.interval;
  }

  // Every answer is a full picture of the requested symbols, so it is handed
  // on as a snapshot: skipped seqs between polls are expected, not gaps.
  async exchange() {
    const headers = this.etag ? { "If-None-Match": this.etag } : {};
    const answer = await this.fetchText(this.url + quotesQuery(this.symbols), headers);
    if (!answer) return null;
    const { response, text } = answer;
    if (response.status === 200) {
      this.etag = response.headers.get("ETag");
      const body = JSON.parse(text);
      this.handlers.snapshot(body.quotes, body.step);
      if (body.session) this.handlers.session?.(body.session);
    } else if (response.status !== 304) {
      throw new Error(`HTTP ${response.status}`);
    }
    this.handlers.status("polling", `${this.label} every ${this.interval / 1000} s`);
    return this.interval;
  }

  symbolsChanged() {
    this.etag = null;
  }

  resync() {
    // Every poll is a full snapshot of the requested symbols already.
  }
}
