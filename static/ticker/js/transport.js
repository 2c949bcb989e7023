// Four ways to get quotes: pushed over a WebSocket or Server-Sent Events, or
// pulled by long-polling or polling. Each is a Transport: the base class owns
// the lifecycle (start and stop, retries with backoff, fail-fast, the silence
// watchdog), and each subclass only says how it connects and reads.
//
// All call the same handlers: status(state, detail), snapshot(quotes, step),
// quotes(quotes, step), request() (an HTTP request or WebSocket frame sent),
// and, when created with failFast, failed(reason) if the transport never
// delivered anything. Optional: feedState("live" | "interrupted"), the server's
// word on the market feed (heartbeats, long-poll answers), and traffic(record),
// what crossed the wire as the transport saw it, for tools that measure it
// (the Lab, wire.js):
//   {kind: "websocket", direction: "in" | "out", text}   one frame
//   {kind: "sse", event, id, text}                       one event received
//   {kind: "http", path, headers, response, text}        one request and its answer

// A transport that fails fast gives up after this long without a snapshot.
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

  constructor(handlers, { symbols = ["*"], failFast = false, silenceMs = SILENCE_MS } = {}) {
    this.handlers = handlers;
    this.label = this.constructor.label;
    this.symbols = symbols;
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

  /** Run fn after ms, unless stop() comes first. One such timer at a time. */
  later(fn, ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(fn, ms);
  }

  /** One server message, the same JSON over WebSocket and SSE (docs/protocol.md), to the handlers. */
  read(type, frame) {
    if (type === "snapshot") {
      this.delivered();
      this.handlers.snapshot(frame.quotes, frame.step);
    } else if (type === "quotes") this.handlers.quotes(frame.quotes, frame.step);
    else if (type === "heartbeat") this.handlers.feedState?.(frame.feed);
    else if (type === "error") console.warn("ticker server error", frame.code, frame.message);
  }

  /** Called by the watchdog; push transports that call heard() say what silence means. */
  silent() {}
}

export class WebSocketTransport extends Transport {
  static label = "WebSocket";

  constructor(handlers, { url = wsUrl(), ...options } = {}) {
    super(handlers, options);
    this.url = url;
    this.socket = null;
  }

  open() {
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.connected();
      if (this.symbols.length) this.send({ action: "subscribe", symbols: this.symbols });
      else this.delivered();
    });
    socket.addEventListener("message", (event) => {
      this.heard();
      this.handlers.traffic?.({ kind: "websocket", direction: "in", text: event.data });
      const frame = JSON.parse(event.data);
      this.read(frame.type, frame);
    });
    socket.addEventListener("close", () => {
      if (this.socket !== socket || this.stopped) return;
      this.socket = null;
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

  /** Follow a new set of symbols (["*"] for all). */
  setSymbols(symbols) {
    this.send({ action: "unsubscribe", symbols: ["*"] });
    this.symbols = symbols;
    if (symbols.length) this.send({ action: "subscribe", symbols });
  }

  /** A seq gap was seen: ask again for these symbols, which answers with a snapshot. */
  resync(symbols) {
    this.send({ action: "subscribe", symbols });
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
    const source = new EventSource(this.url + quotesQuery(this.symbols));
    this.source = source;
    this.handlers.request();
    source.addEventListener("open", () => this.connected());
    for (const type of ["snapshot", "quotes", "heartbeat"]) {
      source.addEventListener(type, (event) => {
        this.heard();
        this.handlers.traffic?.({ kind: "sse", event: event.type, id: event.lastEventId, text: event.data });
        this.read(type, JSON.parse(event.data));
      });
    }
    source.addEventListener("error", () => {
      if (this.source !== source || this.stopped) return;
      const reason = "event stream failed before any data";
      // The browser gives up on a non-200 answer (a proxy's 502, a restart): retry ourselves.
      if (source.readyState === EventSource.CLOSED) return this.retry(reason);
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

  /** No event, not even a heartbeat, for silenceMs: reopen the stream, which starts with a fresh snapshot. */
  silent() {
    if (this.stopped || !this.source) return;
    this.handlers.status("reconnecting", `${this.label} silent`);
    this.restart();
  }

  setSymbols(symbols) {
    this.symbols = symbols;
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
  constructor(handlers, options) {
    super(handlers, options);
    this.controller = null;
    // The shortest wait after a failed request.
    this.retryFloor = 0;
  }

  open() {
    this.poll();
  }

  close() {
    this.controller?.abort();
  }

  async poll() {
    if (this.stopped) return;
    let wait;
    try {
      wait = this.symbols.length ? await this.exchange() : this.idle();
      if (wait === null) return; // stopped while the answer came in
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
    return this.stopped ? null : { response, text };
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
    // A resync() during this request asked for a full answer next: keep since at null.
    if (!this.resyncing) this.since = body.step;
    this.handlers.status("live", this.label);
    return 0;
  }

  setSymbols(symbols) {
    this.symbols = symbols;
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
    } else if (response.status !== 304) {
      throw new Error(`HTTP ${response.status}`);
    }
    this.handlers.status("polling", `${this.label} every ${this.interval / 1000} s`);
    return this.interval;
  }

  setSymbols(symbols) {
    this.symbols = symbols;
    this.etag = null;
  }

  resync() {
    // Every poll is a full snapshot of the requested symbols already.
  }
}
