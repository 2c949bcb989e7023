import { test } from "node:test";
import assert from "node:assert/strict";

import { MAX_WATCHLIST, Watchlist } from "../../static/ticker/js/watchlist.js";

const KEY = "ticker.watchlist.v2";
const ONLY_KEY = "ticker.watchOnly";
const DEFAULTS = [
  { symbol: "AAPL", name: "Apple Inc." },
  { symbol: "MSFT", name: "Microsoft Corp." },
];

/** A localStorage stand-in: string values, null for a missing key. */
function memoryStorage(initial = {}) {
  const items = new Map(Object.entries(initial));
  return {
    items,
    getItem: (key) => (items.has(key) ? items.get(key) : null),
    setItem: (key, value) => items.set(key, String(value)),
  };
}

test("a new browser starts from the default watchlist, with names, and shows the movers", () => {
  const list = new Watchlist(DEFAULTS, memoryStorage());
  assert.deepEqual(list.symbols, ["AAPL", "MSFT"]);
  assert.equal(list.name("MSFT"), "Microsoft Corp.");
  assert.equal(list.only, false);
});

test("adding a symbol puts it last with its name and saves the list", () => {
  const storage = memoryStorage();
  const list = new Watchlist(DEFAULTS, storage);
  assert.equal(list.add("ZZZ", "Simulated Co. 0001"), true);
  assert.deepEqual(list.symbols, ["AAPL", "MSFT", "ZZZ"]);
  assert.deepEqual(JSON.parse(storage.getItem(KEY)).at(-1), { symbol: "ZZZ", name: "Simulated Co. 0001" });
  assert.equal(list.add("ZZZ", "again"), false, "a symbol is listed once");
});

test("removing symbols saves the list, and a saved list wins over the defaults on the next load", () => {
  const storage = memoryStorage();
  const list = new Watchlist(DEFAULTS, storage);
  assert.equal(list.remove("AAPL", "NOPE"), true);
  assert.equal(list.remove("NOPE"), false);
  assert.deepEqual(new Watchlist(DEFAULTS, storage).symbols, ["MSFT"]);
});

test("an emptied watchlist stays empty on the next load", () => {
  const storage = memoryStorage();
  new Watchlist(DEFAULTS, storage).remove("AAPL", "MSFT");
  assert.deepEqual(new Watchlist(DEFAULTS, storage).symbols, []);
});

test("an unreadable saved list falls back to the defaults, and junk entries are skipped", () => {
  assert.deepEqual(new Watchlist(DEFAULTS, memoryStorage({ [KEY]: "{not json" })).symbols, ["AAPL", "MSFT"]);
  assert.deepEqual(new Watchlist(DEFAULTS, memoryStorage({ [KEY]: '{"a": 1}' })).symbols, ["AAPL", "MSFT"]);
  const mixed = JSON.stringify([{ symbol: "TSLA" }, 7, null, { name: "no symbol" }]);
  const list = new Watchlist(DEFAULTS, memoryStorage({ [KEY]: mixed }));
  assert.deepEqual(list.symbols, ["TSLA"]);
  assert.equal(list.name("TSLA"), "");
});

test("the watchlist holds at most MAX_WATCHLIST symbols, so a subscription with the chart fits 100", () => {
  const list = new Watchlist([], memoryStorage());
  for (let i = 0; i < MAX_WATCHLIST; i++) assert.equal(list.add(`S${i}`), true);
  assert.equal(list.full, true);
  assert.equal(list.add("ONE.MORE"), false);
  assert.equal(list.subscription("CHART").length, 100);
});

test("the subscription is the watchlist and the charted symbol, sorted, each once", () => {
  const list = new Watchlist(DEFAULTS, memoryStorage());
  assert.deepEqual(list.subscription(), ["AAPL", "MSFT"]);
  assert.deepEqual(list.subscription("NVDA"), ["AAPL", "MSFT", "NVDA"]);
  assert.deepEqual(list.subscription("AAPL"), ["AAPL", "MSFT"]);
});

test("'Watchlist only' is saved and read back", () => {
  const storage = memoryStorage();
  new Watchlist(DEFAULTS, storage).setOnly(true);
  assert.equal(storage.getItem(ONLY_KEY), "1");
  assert.equal(new Watchlist(DEFAULTS, storage).only, true);
  new Watchlist(DEFAULTS, storage).setOnly(false);
  assert.equal(new Watchlist(DEFAULTS, storage).only, false);
});
