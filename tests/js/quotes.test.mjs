import { test } from "node:test";
import assert from "node:assert/strict";

import {
  LatencyWindow,
  QuoteBook,
  arrow,
  describeSession,
  direction,
  formatField,
  formatPrice,
  formatSigned,
  formatVolume,
  formatWait,
  sessionState,
  sortSymbols,
  trend,
} from "../../static/ticker/js/quotes.js";

function quote(symbol, seq, price = 100, extra = {}) {
  return { symbol, seq, price, ts: 1_700_000_000_000 + seq, ...extra };
}

// --- QuoteBook ---------------------------------------------------------------

test("QuoteBook starts out holding the quotes it was given", () => {
  const book = new QuoteBook([quote("AAPL", 3), quote("MSFT", 7)]);
  assert.equal(book.quotes.get("AAPL").seq, 3);
  assert.equal(book.quotes.get("MSFT").seq, 7);
  assert.equal(book.gaps, 0);
});

test("QuoteBook applies the next quote of a symbol and reports the one it replaced as prev", () => {
  const old = quote("AAPL", 3, 100);
  const book = new QuoteBook([old]);
  const next = quote("AAPL", 4, 101);
  const { changed, gapped } = book.apply([next]);
  assert.deepEqual(changed, [{ quote: next, prev: old }]);
  assert.deepEqual(gapped, []);
  assert.equal(book.quotes.get("AAPL"), next);
  assert.equal(book.gaps, 0);
});

test("QuoteBook accepts the first quote of an unknown symbol with no prev and no gap", () => {
  const book = new QuoteBook();
  const first = quote("NVDA", 42);
  const { changed, gapped } = book.apply([first]);
  assert.deepEqual(changed, [{ quote: first, prev: undefined }]);
  assert.deepEqual(gapped, []);
  assert.equal(book.gaps, 0);
});

test("QuoteBook ignores a duplicate quote with the same seq", () => {
  const held = quote("AAPL", 5, 100);
  const book = new QuoteBook([held]);
  const { changed, gapped } = book.apply([quote("AAPL", 5, 999)]);
  assert.deepEqual(changed, []);
  assert.deepEqual(gapped, []);
  assert.equal(book.quotes.get("AAPL"), held);
});

test("QuoteBook ignores a stale quote older than the one it holds", () => {
  const held = quote("AAPL", 5, 100);
  const book = new QuoteBook([held]);
  const { changed } = book.apply([quote("AAPL", 2, 50)]);
  assert.deepEqual(changed, []);
  assert.equal(book.quotes.get("AAPL"), held);
  assert.equal(book.gaps, 0);
});

test("QuoteBook ignores stale quotes even inside a snapshot", () => {
  const held = quote("AAPL", 5, 100);
  const book = new QuoteBook([held]);
  const { changed } = book.apply([quote("AAPL", 4, 50)], { snapshot: true });
  assert.deepEqual(changed, []);
  assert.equal(book.quotes.get("AAPL"), held);
});

test("QuoteBook counts a gap when a symbol's seq jumps by more than 1, and still applies the quote", () => {
  const book = new QuoteBook([quote("AAPL", 5)]);
  const jumped = quote("AAPL", 7, 102);
  const { changed, gapped } = book.apply([jumped]);
  assert.deepEqual(gapped, ["AAPL"]);
  assert.equal(book.gaps, 1);
  assert.equal(changed.length, 1);
  assert.equal(book.quotes.get("AAPL"), jumped);
});

test("QuoteBook does not count a gap for consecutive seqs", () => {
  const book = new QuoteBook([quote("AAPL", 5)]);
  book.apply([quote("AAPL", 6)]);
  book.apply([quote("AAPL", 7)]);
  assert.equal(book.gaps, 0);
});

test("QuoteBook does not count a gap when a snapshot skips seqs", () => {
  const book = new QuoteBook([quote("AAPL", 5)]);
  const fresh = quote("AAPL", 50, 110);
  const { changed, gapped } = book.apply([fresh], { snapshot: true });
  assert.deepEqual(gapped, []);
  assert.equal(book.gaps, 0);
  assert.equal(changed.length, 1);
  assert.equal(book.quotes.get("AAPL"), fresh);
});

test("QuoteBook keeps a running total of gaps and reports only the gapped symbols of each batch", () => {
  const book = new QuoteBook([quote("AAPL", 1), quote("MSFT", 1), quote("TSLA", 1)]);
  const first = book.apply([quote("AAPL", 3), quote("MSFT", 2), quote("TSLA", 9)]);
  assert.deepEqual(first.gapped, ["AAPL", "TSLA"]);
  assert.equal(first.changed.length, 3);
  const second = book.apply([quote("MSFT", 4)]);
  assert.deepEqual(second.gapped, ["MSFT"]);
  assert.equal(book.gaps, 3);
});

test("QuoteBook judges each quote of a batch against the one applied just before it", () => {
  const book = new QuoteBook([quote("AAPL", 1, 100)]);
  const { changed, gapped } = book.apply([quote("AAPL", 2, 101), quote("AAPL", 3, 102), quote("AAPL", 3, 0)]);
  assert.equal(changed.length, 2);
  assert.equal(changed[1].prev.seq, 2);
  assert.deepEqual(gapped, []);
  assert.equal(book.quotes.get("AAPL").price, 102);
});

// --- LatencyWindow -----------------------------------------------------------

test("LatencyWindow has no percentile before any sample arrives", () => {
  assert.equal(new LatencyWindow().percentile(50), null);
});

test("LatencyWindow p50 is the median of an odd number of samples", () => {
  const window = new LatencyWindow();
  for (const ms of [30, 10, 20]) window.add(ms);
  assert.equal(window.percentile(50), 20);
});

test("LatencyWindow percentiles use the nearest sample at or below the rank", () => {
  const window = new LatencyWindow();
  for (const ms of [40, 10, 30, 20]) window.add(ms);
  assert.equal(window.percentile(50), 20);
  assert.equal(window.percentile(75), 30);
  assert.equal(window.percentile(90), 40);
});

test("LatencyWindow p0 is the fastest sample and p100 the slowest", () => {
  const window = new LatencyWindow();
  for (const ms of [5, 250, 17]) window.add(ms);
  assert.equal(window.percentile(0), 5);
  assert.equal(window.percentile(100), 250);
});

test("LatencyWindow sorts samples numerically, not as text", () => {
  const window = new LatencyWindow();
  for (const ms of [100, 9, 20]) window.add(ms);
  assert.equal(window.percentile(0), 9);
  assert.equal(window.percentile(50), 20);
  assert.equal(window.percentile(100), 100);
});

test("LatencyWindow keeps only the most recent `size` samples", () => {
  const window = new LatencyWindow(3);
  for (const ms of [1000, 2000, 1, 2, 3]) window.add(ms);
  assert.deepEqual(window.samples, [1, 2, 3]);
  assert.equal(window.percentile(100), 3);
});

test("LatencyWindow defaults to a window of 200 samples", () => {
  const window = new LatencyWindow();
  for (let i = 0; i < 250; i++) window.add(i);
  assert.equal(window.samples.length, 200);
  assert.equal(window.percentile(0), 50);
});

// --- direction ---------------------------------------------------------------

test("direction is 1 when the price went up", () => {
  assert.equal(direction({ price: 101 }, { price: 100 }), 1);
});

test("direction is -1 when the price went down", () => {
  assert.equal(direction({ price: 99.5 }, { price: 100 }), -1);
});

test("direction is 0 when the price is unchanged", () => {
  assert.equal(direction({ price: 100 }, { price: 100 }), 0);
});

test("direction is 0 when there is no previous quote", () => {
  assert.equal(direction({ price: 100 }, undefined), 0);
});

// --- formatPrice / formatSigned ----------------------------------------------

test("formatPrice shows exactly two decimals", () => {
  assert.equal(formatPrice(187), "187.00");
  assert.equal(formatPrice(187.5), "187.50");
  assert.equal(formatPrice(3.14159), "3.14");
  assert.equal(formatPrice(2.999), "3.00");
});

test("formatSigned adds '+' to a positive value", () => {
  assert.equal(formatSigned(1.5), "+1.50");
});

test("formatSigned shows a negative value with its own '-' and no '+'", () => {
  assert.equal(formatSigned(-2.25), "-2.25");
});

test("formatSigned shows zero with no sign", () => {
  assert.equal(formatSigned(0), "0.00");
});

test("formatSigned appends the suffix after the number", () => {
  assert.equal(formatSigned(0.42, "%"), "+0.42%");
  assert.equal(formatSigned(-0.42, "%"), "-0.42%");
  assert.equal(formatSigned(0, "%"), "0.00%");
});

// --- the screen's formatting and sorting -----------------------------------------

test("trend and arrow follow the change against the previous close, and say nothing for none", () => {
  assert.deepEqual([trend(0.5), trend(-0.01), trend(0)], ["up", "down", ""]);
  assert.deepEqual([arrow(0.5), arrow(-0.01), arrow(0)], ["▲", "▼", ""]);
});

test("formatVolume keeps a phone's column short", () => {
  assert.equal(formatVolume(987), "987");
  assert.equal(formatVolume(12_345), "12,345");
  assert.equal(formatVolume(1_234_567), "1.23M");
  assert.equal(formatVolume(45_600_000), "45.6M");
  assert.equal(formatVolume(4_500_000_000), "4.50B");
  assert.equal(formatVolume(undefined), "—");
});

test("formatField shows a price field with two decimals, or a dash while it is missing", () => {
  assert.equal(formatField({ open: 12.5 }, "open"), "12.50");
  assert.equal(formatField({}, "open"), "—");
  assert.equal(formatField(undefined, "open"), "—");
});

test("sortSymbols orders by a column either way, ties by symbol, rows without a quote last", () => {
  const quotes = new Map([
    ["AAA", { change_pct: 1.5, price: 10 }],
    ["BBB", { change_pct: -2, price: 30 }],
    ["CCC", { change_pct: 1.5, price: 20 }],
  ]);
  const symbols = ["DDD", "CCC", "BBB", "AAA"];
  assert.deepEqual(sortSymbols(symbols, quotes, "change_pct", "descending"), ["AAA", "CCC", "BBB", "DDD"]);
  assert.deepEqual(sortSymbols(symbols, quotes, "change_pct", "ascending"), ["BBB", "AAA", "CCC", "DDD"]);
  assert.deepEqual(sortSymbols(symbols, quotes, "last", "descending"), ["BBB", "CCC", "AAA", "DDD"]);
  assert.deepEqual(sortSymbols(symbols, quotes, "symbol", "descending"), ["DDD", "CCC", "BBB", "AAA"]);
});

test("describeSession says whether the market is open and when that changes", () => {
  const now = 1_000_000;
  assert.equal(describeSession({ state: "open", until: now + 302_000 }, now), "Market open · closes in 5m 02s");
  assert.equal(describeSession({ state: "closed", until: now + 25_400 }, now), "Market closed · opens in 25 s");
  assert.equal(describeSession({ state: "closed", until: now - 5 }, now), "Market open", "past until: changed");
  assert.equal(describeSession({ state: "open", until: now }, now), "Market closed");
  assert.equal(sessionState({ state: "open", until: now + 1 }, now), "open");
  assert.equal(sessionState(null, now), null);
  assert.equal(describeSession(null, now), "Market —");
  assert.equal(formatWait(3_900_000), "1h 05m");
});
