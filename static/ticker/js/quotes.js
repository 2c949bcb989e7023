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
