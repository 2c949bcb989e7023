import assert from "node:assert/strict";
import test from "node:test";

import { DeltaBook, derive, divideHalfEven, isWhole, QUOTE_FIELDS } from "../../static/ticker/js/delta.js";

test("divideHalfEven rounds exact halves to the even neighbour, both signs", () => {
  assert.equal(divideHalfEven(5, 10), 0);
  assert.equal(divideHalfEven(15, 10), 2);
  assert.equal(divideHalfEven(25, 10), 2);
  assert.equal(divideHalfEven(26, 10), 3);
  assert.equal(divideHalfEven(-15, 10), -2);
  assert.equal(divideHalfEven(-14, 10), -1);
  assert.equal(divideHalfEven(0, 7), 0);
});

// [price, prev_close, change, change_pct] as ticker.market.prices.change_pct gives them (Python, decimal arithmetic).
const FROM_PYTHON = [
  [200.01, 200.0, 0.01, 0.0], // 0.005 %: a tie, to even
  [200.03, 200.0, 0.03, 0.02], // 0.015 %: a tie, to even (up)
  [199.97, 200.0, -0.03, -0.02],
  [188.55, 189.5, -0.95, -0.5],
  [0.02, 0.01, 0.01, 100.0],
  [31.7, 31.7, 0.0, 0.0],
  [1234.56, 0.01, 1234.55, 12345500.0],
  [412.7, 415.2, -2.5, -0.6],
];

test("derive works out change and change_pct exactly as the server does", () => {
  for (const [price, prev_close, change, change_pct] of FROM_PYTHON) {
    const quote = derive({ symbol: "X", price, prev_close });
    assert.equal(quote.change, change, `change of ${price} against ${prev_close}`);
    assert.equal(quote.change_pct, change_pct, `change_pct of ${price} against ${prev_close}`);
  }
});

const whole = (fields = {}) => ({
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
  ...fields,
});

test("a quote with every field is whole; a delta is not", () => {
  assert.ok(isWhole(whole()));
  assert.equal(QUOTE_FIELDS.length, Object.keys(whole()).length);
  assert.ok(!isWhole({ symbol: "AAPL", seq: 8, price: 191 }));
});

test("DeltaBook merges a delta onto the quote one seq before it, keeping the fields it leaves out", () => {
  const book = new DeltaBook();
  book.hold([whole()]);
  const { quotes, unapplied } = book.expand([{ symbol: "AAPL", seq: 8, price: 191.0, high: 191.0, ts: 1250 }]);
  assert.deepEqual(unapplied, []);
  assert.deepEqual(quotes, [whole({ seq: 8, price: 191.0, high: 191.0, ts: 1250, change: 1.5, change_pct: 0.79 })]);
  assert.deepEqual(Object.keys(quotes[0]), QUOTE_FIELDS, "the same field order as a whole quote");
});

test("DeltaBook skips what it already has, takes whole quotes over gaps, and names deltas it cannot apply", () => {
  const book = new DeltaBook();
  book.hold([whole()]);
  assert.deepEqual(book.expand([{ symbol: "AAPL", seq: 7, price: 1 }]).quotes, []);
  const gap = book.expand([{ symbol: "AAPL", seq: 9, price: 191 }, { symbol: "MSFT", seq: 3, price: 400 }]);
  assert.deepEqual(gap, { quotes: [], unapplied: ["AAPL", "MSFT"] });
  const after = book.expand([whole({ seq: 12, price: 180 })]);
  assert.deepEqual(after.quotes, [whole({ seq: 12, price: 180 })]);
  book.forget(["AAPL"]);
  assert.deepEqual(book.expand([{ symbol: "AAPL", seq: 13, price: 181 }]).unapplied, ["AAPL"]);
});
