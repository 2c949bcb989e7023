// Four ways to get quotes: pushed over a WebSocket or Server-Sent Events, or
// pulled by long-polling or polling. All call the same handlers:
// status(state, detail), snapshot(quotes, step), quotes(quotes, step),
// request() (an HTTP request or WebSocket frame sent), and, when created with
// failFast, failed(reason) if the transport never delivered anything. Optional:
// feedState("live" | "interrupted"), the server's word on the market feed
// (heartbeats), and wire({payload, overhead, direction}) for the Lab's byte counts.

import { requestHeaderBytes, responseHeaderBytes, sseOverhead, utf8Length, wsFrameHeader } from "./wire.js";

const CONNECT_TIMEOUT_MS = 5000;
// The server sends a heartbeat every 5 s: this long without any message and a
// push connection is taken for dead (half-open) and opened again.
export const SILENCE_MS = 12000;

/** Calls onSilence() when kick() has not been called for `ms`. */
export class Watchdog {
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

/**
 * Fail-fast bookkeeping shared by the feeds: a feed "works" once it has
 * delivered a snapshot. Until then, with failFast set, a close or a silent
 * CONNECT_TIMEOUT_MS is reported as failed() so a chain can fall back; after
 * that the feed reconnects on its own (a restart is not a blocked transport).
 */
class FailFast {
  constructor(feed, failFast) {
    this.feed = feed;
    this.enabled = failFast;
    this.worked = false;
    this.timer = null;
  }

  arm() {
    clearTimeout(this.timer);
    if (this.enabled && !this.worked) this.timer = setTimeout(() => this.fail("no data in time"), CONNECT_TIMEOUT_MS);
  }

  succeeded() {
    this.worked = true;
    clearTimeout(this.timer);
  }

  /** Returns true when the failure was reported (the feed should not retry). */
  fail(reason) {
    if (!this.enabled || this.worked || this.feed.stopped) return false;
    clearTimeout(this.timer);
    this.feed.stop();
    this.feed.handlers.failed?.(reason);
    return true;
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

/** One HTTP exchange's bytes: the body is payload; request and response heads are overhead. */
function reportHttp(handlers, path, response, text, extra = {}) {
  if (!handlers.wire) return;
  handlers.wire({ payload: 0, overhead: requestHeaderBytes(path, extra), direction: "out" });
  handlers.wire({ payload: utf8Length(text), overhead: responseHeaderBytes(response), direction: "in" });
}

export class WebSocketFeed {
  constructor(handlers, { symbols = ["*"], url = wsUrl(), failFast = false } = {}) {
    this.handlers = handlers;
    this.symbols = symbols;
    this.url = url;
    this.attempt = 0;
    this.socket = null;
    this.stopped = false;
    this.timer = null;
    this.failFast = new FailFast(this, failFast);
    this.watchdog = new Watchdog(() => this.silent());
  }

  start() {
    this.stopped = false;
    this.handlers.status(this.attempt ? "reconnecting" : "connecting", "WebSocket");
    this.failFast.arm();
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      this.watchdog.kick();
      this.handlers.status("live", "WebSocket");
      if (this.symbols.length) this.send({ action: "subscribe", symbols: this.symbols });
      else this.failFast.succeeded();
    });
    socket.addEventListener("message", (event) => {
      this.watchdog.kick();
      if (this.handlers.wire) {
        const payload = utf8Length(event.data);
        this.handlers.wire({ payload, overhead: wsFrameHeader(payload), direction: "in" });
      }
      this.onMessage(JSON.parse(event.data));
    });
    socket.addEventListener("close", () => {
      if (this.socket !== socket || this.stopped) return;
      this.reconnect("WebSocket closed before any data");
    });
  }

  /** No message, not even a heartbeat, for SILENCE_MS: the connection is dead even if the browser has not noticed. */
  silent() {
    if (this.stopped || !this.socket) return;
    const socket = this.socket;
    this.socket = null;
    socket.close(4000, "no heartbeat");
    this.reconnect("WebSocket silent");
  }

  reconnect(reason) {
    this.watchdog.clear();
    if (this.failFast.fail(reason)) return;
    const delay = backoffDelay(this.attempt++);
    this.handlers.status("reconnecting", `WebSocket, retry in ${(delay / 1000).toFixed(1)} s`);
    this.timer = setTimeout(() => this.start(), delay);
  }

  onMessage(frame) {
    if (frame.type === "snapshot") {
      this.failFast.succeeded();
      this.handlers.snapshot(frame.quotes, frame.step);
    }
    else if (frame.type === "quotes") this.handlers.quotes(frame.quotes, frame.step);
    else if (frame.type === "heartbeat") this.handlers.feedState?.(frame.feed);
    else if (frame.type === "error") console.warn("ticker server error", frame.code, frame.message);
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) {
      const text = JSON.stringify(message);
      this.socket.send(text);
      this.handlers.request();
      const payload = utf8Length(text);
      this.handlers.wire?.({ payload, overhead: wsFrameHeader(payload, { masked: true }), direction: "out" });
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

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.failFast.clear();
    this.watchdog.clear();
    this.socket?.close(1000);
    this.socket = null;
  }
}

/** Server-Sent Events: one long HTTP response; the browser reconnects with Last-Event-ID by itself. */
export class SseFeed {
  constructor(handlers, { symbols = ["*"], url = "/api/quotes/stream/", failFast = false } = {}) {
    this.handlers = handlers;
    this.symbols = symbols;
    this.url = url;
    this.source = null;
    this.stopped = false;
    this.attempt = 0;
    this.timer = null;
    this.failFast = new FailFast(this, failFast);
    this.watchdog = new Watchdog(() => this.silent());
  }

  start() {
    this.stopped = false;
    this.handlers.status("connecting", "Server-Sent Events");
    if (!this.symbols.length) {
      this.failFast.succeeded();
      this.handlers.status("live", "Server-Sent Events (watchlist empty)");
      return;
    }
    this.failFast.arm();
    const query = this.symbols.includes("*") ? "" : `?symbols=${encodeURIComponent(this.symbols.join(","))}`;
    const source = new EventSource(this.url + query);
    this.source = source;
    this.handlers.request();
    source.addEventListener("open", () => {
      this.attempt = 0;
      this.watchdog.kick();
      this.handlers.status("live", "Server-Sent Events");
    });
    const wire = (event) => {
      this.watchdog.kick();
      const payload = utf8Length(event.data);
      this.handlers.wire?.({ payload, overhead: sseOverhead(event.type, event.lastEventId, payload), direction: "in" });
    };
    source.addEventListener("snapshot", (event) => {
      wire(event);
      this.failFast.succeeded();
      this.handlers.snapshot(JSON.parse(event.data).quotes);
    });
    source.addEventListener("quotes", (event) => {
      wire(event);
      const frame = JSON.parse(event.data);
      this.handlers.quotes(frame.quotes, frame.step);
    });
    source.addEventListener("heartbeat", (event) => {
      wire(event);
      this.handlers.feedState?.(JSON.parse(event.data).feed);
    });
    source.addEventListener("error", () => {
      if (this.source !== source || this.stopped) return;
      if (this.failFast.fail("event stream failed before any data")) return;
      if (source.readyState === EventSource.CLOSED) {
        // The browser gives up on a non-200 answer (a proxy's 502, a restart): retry ourselves.
        const delay = backoffDelay(this.attempt++);
        this.handlers.status("reconnecting", `Server-Sent Events, retry in ${(delay / 1000).toFixed(1)} s`);
        this.timer = setTimeout(() => this.restart(), delay);
        return;
      }
      // Otherwise EventSource retries by itself (the server asks for 1 s), resuming with Last-Event-ID.
      this.handlers.status("reconnecting", "Server-Sent Events");
      this.handlers.request();
    });
  }

  setSymbols(symbols) {
    this.symbols = symbols;
    this.restart();
  }

  /** A gap: reopen the stream, which starts with a fresh snapshot. */
  resync() {
    this.restart();
  }

  /** No event, not even a heartbeat, for SILENCE_MS: reopen the stream, which starts with a fresh snapshot. */
  silent() {
    if (this.stopped || !this.source) return;
    this.handlers.status("reconnecting", "Server-Sent Events silent");
    this.restart();
  }

  restart() {
    if (this.stopped) return;
    this.source?.close();
    this.start();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.failFast.clear();
    this.watchdog.clear();
    this.source?.close();
    this.source = null;
  }
}

/** Long-polling: each request waits at the server until something changes after `since`. */
export class LongPollFeed {
  constructor(handlers, { symbols = ["*"], url = "/api/quotes/", wait = 25, failFast = false } = {}) {
    this.handlers = handlers;
    this.symbols = symbols;
    this.url = url;
    this.wait = wait;
    this.since = null;
    this.resyncing = false;
    this.stopped = false;
    this.failures = 0;
    this.timer = null;
    this.controller = null;
    this.failFast = new FailFast(this, failFast);
  }

  start() {
    this.stopped = false;
    this.handlers.status("connecting", "long-polling");
    this.failFast.arm();
    this.poll();
  }

  async poll() {
    if (this.stopped) return;
    if (!this.symbols.length) {
      this.failFast.succeeded();
      this.handlers.status("live", "long-polling (watchlist empty)");
      this.timer = setTimeout(() => this.poll(), 1000);
      return;
    }
    const params = new URLSearchParams();
    if (!this.symbols.includes("*")) params.set("symbols", this.symbols.join(","));
    // The first request (and a resync) is a plain poll: the full picture and its step.
    if (this.since !== null) {
      params.set("since", String(this.since));
      params.set("wait", String(this.wait));
    }
    this.controller = new AbortController();
    let wait = 0;
    try {
      this.handlers.request();
      const path = `${this.url}?${params}`;
      const response = await fetch(path, { cache: "no-store", signal: this.controller.signal });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const text = await response.text();
      reportHttp(this.handlers, path, response, text);
      const body = JSON.parse(text);
      if (this.stopped) return;
      // An answer holds the latest quote of each changed symbol: when a round
      // trip spans several steps, seq skips on purpose, so it is a snapshot.
      if (this.since === null) this.failFast.succeeded();
      if (body.quotes.length || this.since === null) this.handlers.snapshot(body.quotes, body.step);
      if (body.feed) this.handlers.feedState?.(body.feed);
      // A resync() during this request asked for a full answer next: keep since at null.
      if (!this.resyncing) this.since = body.step;
      this.resyncing = false;
      this.failures = 0;
      this.handlers.status("live", "long-polling");
    } catch (error) {
      if (this.stopped) return;
      // resync() aborts the waiting request on purpose: ask again straight away.
      if (error.name === "AbortError") return void (this.timer = setTimeout(() => this.poll(), 0));
      if (this.failFast.fail(`long-poll failed (${error.message})`)) return;
      wait = backoffDelay(this.failures++);
      this.handlers.status("reconnecting", `long-polling failed (${error.message})`);
    }
    this.timer = setTimeout(() => this.poll(), wait);
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

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.failFast.clear();
    this.controller?.abort();
  }
}

export class PollingFeed {
  // Polling is the last resort: it never gives up, so it takes no failFast.
  constructor(handlers, { symbols = ["*"], interval = 1000, url = "/api/quotes/" } = {}) {
    this.handlers = handlers;
    this.symbols = symbols;
    this.interval = interval;
    this.url = url;
    this.etag = null;
    this.timer = null;
    this.stopped = false;
    this.failures = 0;
  }

  start() {
    this.stopped = false;
    this.handlers.status("connecting", "HTTP polling");
    this.poll();
  }

  // Every answer is a full picture of the requested symbols, so it is handed
  // on as a snapshot: skipped seqs between polls are expected, not gaps.
  async poll() {
    if (this.stopped) return;
    if (!this.symbols.length) {
      this.handlers.status("polling", "HTTP polling (watchlist empty)");
      this.timer = setTimeout(() => this.poll(), this.interval);
      return;
    }
    const query = this.symbols.includes("*") ? "" : `?symbols=${encodeURIComponent(this.symbols.join(","))}`;
    const headers = this.etag ? { "If-None-Match": this.etag } : {};
    let wait = this.interval;
    try {
      this.handlers.request();
      const response = await fetch(this.url + query, { headers, cache: "no-store" });
      if (this.stopped) return;
      const text = await response.text();
      reportHttp(this.handlers, this.url + query, response, text, headers);
      if (response.status === 200) {
        this.etag = response.headers.get("ETag");
        const body = JSON.parse(text);
        // stop() may have been called while the body was read (switch to WebSocket):
        // a stopped feed must not touch the page any more.
        if (this.stopped) return;
        this.handlers.snapshot(body.quotes, body.step);
      } else if (response.status !== 304) {
        throw new Error(`HTTP ${response.status}`);
      }
      this.failures = 0;
      this.handlers.status("polling", `HTTP polling every ${this.interval / 1000} s`);
    } catch (error) {
      if (this.stopped) return;
      wait = Math.max(this.interval, backoffDelay(this.failures++));
      this.handlers.status("reconnecting", `HTTP polling failed (${error.message})`);
    }
    this.timer = setTimeout(() => this.poll(), wait);
  }

  setSymbols(symbols) {
    this.symbols = symbols;
    this.etag = null;
  }

  resync() {
    // Every poll is a full snapshot of the requested symbols already.
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
