// Pure quote bookkeeping: no DOM, no network, so it can be unit-tested.

/**
 * The latest quote of each symbol, kept in seq order.
 * apply() ignores anything not newer than what it holds and reports gaps:
 * seq grows by exactly 1 per change of a symbol, so a jump means a lost update.
 */
export class QuoteBook {
  constructor(quotes = []) {
    this.quotes = new Map();
    this.gaps = 0;
    for (const q of quotes) this.quotes.set(q.symbol, q);
  }

  /** Apply quotes; returns {changed: [{quote, prev}], gapped: [symbol]}. */
  apply(quotes, { snapshot = false } = {}) {
    const changed = [];
    const gapped = [];
    for (const quote of quotes) {
      const prev = this.quotes.get(quote.symbol);
      if (prev && quote.seq <= prev.seq) continue;
      if (prev && !snapshot && quote.seq > prev.seq + 1) {
        this.gaps += 1;
        gapped.push(quote.symbol);
      }
      this.quotes.set(quote.symbol, quote);
      changed.push({ quote, prev });
    }
    return { changed, gapped };
  }
}

/** Rolling window of latency samples (ms) with a median. */
export class LatencyWindow {
  constructor(size = 200) {
    this.size = size;
    this.samples = [];
  }

  add(ms) {
    this.samples.push(ms);
    if (this.samples.length > this.size) this.samples.shift();
  }

  percentile(p) {
    if (!this.samples.length) return null;
    const sorted = [...this.samples].sort((a, b) => a - b);
    const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
    return sorted[i];
  }
}

export function direction(quote, prev) {
  if (!prev || quote.price === prev.price) return 0;
  return quote.price > prev.price ? 1 : -1;
}

export function formatPrice(value) {
  return value.toFixed(2);
}

export function formatSigned(value, suffix = "") {
  const text = value.toFixed(2) + suffix;
  return value > 0 ? "+" + text : text;
}

/** The sign of a quote's change against the previous close: "up", "down" or "" (unchanged). */
export function trend(change) {
  return change > 0 ? "up" : change < 0 ? "down" : "";
}

/** An arrow that says what the colour says, for those who cannot see the colour. */
export function arrow(change) {
  return change > 0 ? "▲" : change < 0 ? "▼" : "";
}

/** Shares traded: 987, 12,345, 1.23M, 4.5B: short enough for a phone's column. */
export function formatVolume(value) {
  if (typeof value !== "number") return "—";
  if (value < 100_000) return value.toLocaleString("en-US");
  if (value < 1e9) return `${(value / 1e6).toFixed(value < 1e7 ? 2 : 1)}M`;
  return `${(value / 1e9).toFixed(2)}B`;
}

/** A number field of a quote as a price, or "—" while the quote (or the field) is missing. */
export function formatField(quote, field) {
  const value = quote?.[field];
  return typeof value === "number" ? formatPrice(value) : "—";
}

/** The columns a table sorts by: the quote field each reads (symbol: the row's own). */
export const SORT_FIELDS = {
  symbol: "symbol",
  last: "price",
  change: "change",
  change_pct: "change_pct",
  open: "open",
  high: "high",
  low: "low",
  volume: "volume",
};

/**
 * Orders symbols by a column: numbers by value, symbols alphabetically; rows
 * without a value yet go last either way; ties by symbol, so the order is stable.
 */
export function sortSymbols(symbols, quotes, key, direction) {
  const field = SORT_FIELDS[key];
  const sign = direction === "descending" ? -1 : 1;
  const valueOf = (symbol) => (key === "symbol" ? symbol : quotes.get(symbol)?.[field]);
  return [...symbols].sort((a, b) => {
    const [x, y] = [valueOf(a), valueOf(b)];
    const xMissing = x === undefined || x === null;
    const yMissing = y === undefined || y === null;
    if (xMissing || yMissing) return xMissing === yMissing ? cmp(a, b) : xMissing ? 1 : -1;
    return cmp(x, y) * sign || cmp(a, b);
  });
}

function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** "5m 02s", "45 s", "1h 05m": a wait short enough to read at a glance. */
export function formatWait(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

/**
 * The session's state at `now`: past `until` it has changed (the schedule follows the clock) even before
 * the server's next frame says so; null while unknown.
 */
export function sessionState(session, now = Date.now()) {
  if (!session || !session.state) return null;
  if (typeof session.until === "number" && now >= session.until) return session.state === "open" ? "closed" : "open";
  return session.state;
}

/** The market session as the page says it: {state, until} (epoch ms) to "Market open · closes in 5m 02s". */
export function describeSession(session, now = Date.now()) {
  const state = sessionState(session, now);
  if (!state) return "Market —";
  const head = state === "open" ? "Market open" : "Market closed";
  // Past `until`, the next change is not known until the server says.
  if (state !== session.state || typeof session.until !== "number") return head;
  return `${head} · ${state === "open" ? "closes" : "opens"} in ${formatWait(session.until - now)}`;
}
