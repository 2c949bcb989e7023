// Pure: one-minute candles and sparklines continued live from quotes (docs/protocol.md, "Candles").
// No DOM and no chart library here, so it can be unit-tested.

export const MINUTE_MS = 60_000;

/** The start of the wall-clock (UTC) minute holding `ts` (epoch ms), in epoch seconds: a candle's time. */
export function minuteOf(ts) {
  return Math.floor(ts / MINUTE_MS) * 60;
}

/**
 * A symbol's one-minute candles, as /api/quotes/<symbol>/candles/ answered
 * them, continued from its quotes: a quote in the last candle's minute moves
 * its close (and high or low); a quote in a later minute starts a new candle.
 * A candle's volume grows by the rise of the quote's session `volume`; a
 * smaller session volume is a new session (reset to 0 at the open), whose
 * whole volume is new.
 */
export class CandleSeries {
  /** `latest`: the newest quote already known, the baseline for volume (the candles include its trades). */
  constructor(candles = [], latest = null, { keep = 240 } = {}) {
    this.candles = candles.map((c) => ({ ...c }));
    this.keep = keep;
    this.volume = latest?.volume ?? null;
    this.lastTs = latest?.ts ?? 0;
  }

  get last() {
    return this.candles.at(-1) ?? null;
  }

  /**
   * Applies a quote; returns the candle it changed or made ({...candle, fresh}
   * with fresh true for a new one), or null for a quote older than what the
   * series holds.
   */
  apply(quote) {
    if (quote.ts < this.lastTs) return null;
    this.lastTs = quote.ts;
    const added = this.addedVolume(quote.volume);
    const time = minuteOf(quote.ts);
    const last = this.last;
    if (last && time < last.time) return null;
    if (last && time === last.time) {
      last.close = quote.price;
      last.high = Math.max(last.high, quote.price);
      last.low = Math.min(last.low, quote.price);
      last.volume += added;
      return { ...last, fresh: false };
    }
    const candle = { time, open: quote.price, high: quote.price, low: quote.price, close: quote.price, volume: added };
    this.candles.push(candle);
    if (this.candles.length > this.keep) this.candles.shift();
    return { ...candle, fresh: true };
  }

  addedVolume(volume) {
    if (typeof volume !== "number") return 0;
    const before = this.volume;
    this.volume = volume;
    if (before === null) return 0;
    return volume >= before ? volume - before : volume;
  }
}

/**
 * A sparkline's closes (GET /api/quotes/sparklines/: the last `size` one-minute
 * closes, the current minute last), continued from quotes: the same minute
 * moves the last close, a later minute adds one and drops the oldest.
 */
export class Closes {
  constructor(closes = [], now = Date.now(), size = 60) {
    this.values = closes.slice(-size);
    this.size = size;
    this.minute = minuteOf(now);
  }

  apply(quote) {
    const minute = minuteOf(quote.ts);
    if (minute < this.minute && this.values.length) return false;
    if (minute > this.minute || !this.values.length) {
      this.values.push(quote.price);
      if (this.values.length > this.size) this.values.shift();
      this.minute = minute;
    } else {
      this.values[this.values.length - 1] = quote.price;
    }
    return true;
  }
}
