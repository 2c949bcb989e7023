// The delta format (docs/protocol.md, "Quote formats"): pure, so it can be unit-tested.
//
// A WebSocket that negotiated DELTA_PROTOCOL gets quotes frames whose quotes carry `symbol`, `seq` and only
// the fields that changed since that symbol's previous quote (seq - 1); `change` and `change_pct` follow from
// `price` and `prev_close` and are never sent in a delta. Snapshots, rate-capped frames and a quote the
// server could not compare carry whole quotes. DeltaBook turns what arrives back into whole quotes, the
// shape every other transport delivers, so nothing past the transport knows the format exists.

export const DELTA_PROTOCOL = "ticker.v2.json";
// Every field of a whole quote (ticker/wire/protocol.py QUOTE_FIELDS).
export const QUOTE_FIELDS = [
  "symbol",
  "price",
  "prev_close",
  "change",
  "change_pct",
  "open",
  "high",
  "low",
  "volume",
  "seq",
  "ts",
  "halted",
];

export function isWhole(quote) {
  return QUOTE_FIELDS.every((field) => field in quote);
}

/** `numerator / denominator` (denominator > 0) rounded to a whole number, half to even, exactly (integers only). */
export function divideHalfEven(numerator, denominator) {
  const sign = numerator < 0 ? -1 : 1;
  const n = Math.abs(numerator);
  const q = Math.floor(n / denominator);
  const r = n - q * denominator; // exact: both below 2**53
  const twice = 2 * r;
  const up = twice > denominator || (twice === denominator && q % 2 === 1);
  return sign * (up ? q + 1 : q);
}

/**
 * The quote with `change` and `change_pct` worked out from `price` and `prev_close` as the server does
 * (ticker/market/prices.py change_pct): in cents, the percentage rounded half to even to two decimals.
 */
export function derive(quote) {
  const price = Math.round(quote.price * 100);
  const close = Math.round(quote.prev_close * 100);
  const cents = price - close;
  const pct = close ? divideHalfEven(cents * 10000, close) / 100 : 0;
  return { ...quote, change: cents / 100, change_pct: pct };
}

/** The latest whole quote of each symbol one delta-format connection has been sent. */
export class DeltaBook {
  constructor() {
    this.held = new Map();
  }

  /** Whole quotes (a snapshot): held as they are, if newer. */
  hold(quotes) {
    for (const quote of quotes) {
      const held = this.held.get(quote.symbol);
      if (!held || quote.seq > held.seq) this.held.set(quote.symbol, quote);
    }
  }

  /**
   * A quotes frame's quotes as whole quotes. `unapplied`: symbols whose delta does not follow the quote
   * held (one was missed, or none is held), which only a snapshot can make whole again.
   */
  expand(quotes) {
    const whole = [];
    const unapplied = [];
    for (const quote of quotes) {
      const held = this.held.get(quote.symbol);
      if (held && quote.seq <= held.seq) continue; // not newer: already applied
      let full;
      if (isWhole(quote)) full = quote;
      else if (held && quote.seq === held.seq + 1) full = derive({ ...held, ...quote });
      else {
        unapplied.push(quote.symbol);
        continue;
      }
      this.held.set(quote.symbol, full);
      whole.push(full);
    }
    return { quotes: whole, unapplied };
  }

  forget(symbols) {
    for (const symbol of symbols) this.held.delete(symbol);
  }
}
