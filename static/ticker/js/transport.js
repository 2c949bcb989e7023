// Two ways to get quotes: pushed over one WebSocket, or pulled by HTTP polling.
// Both call the same handlers: status(state, detail), snapshot(quotes, step),
// quotes(quotes, step), request() (an HTTP request or WebSocket frame sent).

/** ws: or wss: to match the page, so the socket is encrypted whenever the page is. */
export function wsUrl(loc = window.location, path = "/ws/quotes/") {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}${path}`;
}

/** Exponential backoff with full jitter: a random wait in [0, min(max, base * 2^attempt)]. */
export function backoffDelay(attempt, { base = 500, max = 15000, random = Math.random } = {}) {
  return Math.round(random() * Math.min(max, base * 2 ** attempt));
}

export class WebSocketFeed {
  constructor(handlers, { symbols = ["*"], url = wsUrl() } = {}) {
    this.handlers = handlers;
    this.symbols = symbols;
    this.url = url;
    this.attempt = 0;
    this.socket = null;
    this.stopped = false;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.handlers.status(this.attempt ? "reconnecting" : "connecting", "WebSocket");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      this.handlers.status("live", "WebSocket");
      if (this.symbols.length) this.send({ action: "subscribe", symbols: this.symbols });
    });
    socket.addEventListener("message", (event) => this.onMessage(JSON.parse(event.data)));
    socket.addEventListener("close", () => {
      if (this.socket !== socket || this.stopped) return;
      const delay = backoffDelay(this.attempt++);
      this.handlers.status("reconnecting", `WebSocket, retry in ${(delay / 1000).toFixed(1)} s`);
      this.timer = setTimeout(() => this.start(), delay);
    });
  }

  onMessage(frame) {
    if (frame.type === "snapshot") this.handlers.snapshot(frame.quotes, frame.step);
    else if (frame.type === "quotes") this.handlers.quotes(frame.quotes, frame.step);
    else if (frame.type === "error") console.warn("ticker server error", frame.code, frame.message);
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
      this.handlers.request();
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
    this.socket?.close(1000);
    this.socket = null;
  }
}

export class PollingFeed {
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
      if (response.status === 200) {
        this.etag = response.headers.get("ETag");
        const body = await response.json();
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
