import assert from "node:assert/strict";
import { test } from "node:test";

import { CandleSeries, Closes, minuteOf } from "../../static/ticker/js/candles.js";

const T0 = Date.UTC(2030, 0, 2, 14, 30); // a minute's start, epoch ms
const quote = (ms, price, volume) => ({ symbol: "AAPL", ts: T0 + ms, price, volume });

test("minuteOf is the epoch second the quote's UTC minute starts", () => {
  assert.equal(minuteOf(T0), T0 / 1000);
  assert.equal(minuteOf(T0 + 59_999), T0 / 1000);
  assert.equal(minuteOf(T0 + 60_000), T0 / 1000 + 60);
});

test("a quote in the last candle's minute moves its close, high and low, and adds the traded volume", () => {
  const candles = [{ time: T0 / 1000, open: 10, high: 11, low: 9, close: 10, volume: 500 }];
  const series = new CandleSeries(candles, quote(1000, 10, 7_000));
  assert.deepEqual(series.apply(quote(2000, 12, 7_300)), {
    time: T0 / 1000, open: 10, high: 12, low: 9, close: 12, volume: 800, fresh: false,
  });
  assert.deepEqual(series.apply(quote(3000, 8, 7_400)), {
    time: T0 / 1000, open: 10, high: 12, low: 8, close: 8, volume: 900, fresh: false,
  });
  assert.equal(candles[0].close, 10, "the answer it was given is not changed");
});

test("a quote in a later minute starts a new candle at its price, with only the volume traded since", () => {
  const series = new CandleSeries([{ time: T0 / 1000, open: 10, high: 11, low: 9, close: 10, volume: 500 }], quote(0, 10, 100));
  assert.deepEqual(series.apply(quote(61_000, 10.5, 160)), {
    time: T0 / 1000 + 60, open: 10.5, high: 10.5, low: 10.5, close: 10.5, volume: 60, fresh: true,
  });
  assert.equal(series.candles.length, 2);
});

test("a new session's volume (smaller than before: reset at the open) counts whole", () => {
  const series = new CandleSeries([{ time: T0 / 1000, open: 10, high: 10, low: 10, close: 10, volume: 0 }], quote(0, 10, 9_000));
  assert.equal(series.apply(quote(1000, 10, 40)).volume, 40);
});

test("old quotes change nothing, and quotes without volume move prices only", () => {
  const series = new CandleSeries([{ time: T0 / 1000 + 60, open: 10, high: 10, low: 10, close: 10, volume: 5 }], quote(60_000, 10));
  assert.equal(series.apply(quote(1000, 99)), null);
  assert.equal(series.apply(quote(61_000, 11)).volume, 5);
});

test("an empty series starts with the first quote, and keeps at most `keep` candles", () => {
  const series = new CandleSeries([], null, { keep: 2 });
  for (let minute = 0; minute < 3; minute++) series.apply(quote(minute * 60_000, 10 + minute, minute));
  assert.deepEqual(series.candles.map((c) => c.open), [11, 12]);
});

test("Closes moves the last close within the minute and adds one for a new minute, keeping `size`", () => {
  const closes = new Closes([1, 2, 3], T0 + 5000, 3);
  closes.apply(quote(6000, 3.5));
  assert.deepEqual(closes.values, [1, 2, 3.5]);
  closes.apply(quote(60_000, 4));
  assert.deepEqual(closes.values, [2, 3.5, 4]);
  assert.equal(closes.apply(quote(1000, 9)), false, "a quote from an earlier minute is ignored");
  assert.deepEqual(closes.values, [2, 3.5, 4]);
});

test("Closes with nothing yet starts from the first quote", () => {
  const closes = new Closes([], T0);
  closes.apply(quote(0, 5));
  assert.deepEqual(closes.values, [5]);
});
