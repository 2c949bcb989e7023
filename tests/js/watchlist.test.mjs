import { test } from "node:test";
import assert from "node:assert/strict";

import { Watchlist } from "../../static/ticker/js/watchlist.js";

const KEY = "ticker.watchlist";
const ONLY_KEY = "ticker.watchOnly";

/** A localStorage stand-in: string values, null for a missing key. */
function memoryStorage(initial = {}) {
  const items = new Map(Object.entries(initial));
  return {
    items,
    getItem: (key) => (items.has(key) ? items.get(key) : null),
    setItem: (key, value) => items.set(key, String(value)),
  };
}

test("a new browser starts with an empty watchlist that shows every symbol", () => {
  const list = new Watchlist(memoryStorage());
  assert.equal(list.has("AAPL"), false);
  assert.equal(list.only, false);
  assert.deepEqual(list.subscription(), ["*"]);
});

test("toggling a symbol on watches it and saves the list to storage", () => {
  const storage = memoryStorage();
  const list = new Watchlist(storage);
  assert.equal(list.toggle("MSFT"), true);
  assert.equal(list.has("MSFT"), true);
  assert.equal(storage.getItem(KEY), '["MSFT"]');
});

test("toggling a watched symbol again unwatches it and saves that too", () => {
  const storage = memoryStorage();
  const list = new Watchlist(storage);
  list.toggle("MSFT");
  assert.equal(list.toggle("MSFT"), false);
  assert.equal(list.has("MSFT"), false);
  assert.equal(storage.getItem(KEY), "[]");
});

test("the saved watchlist is sorted", () => {
  const storage = memoryStorage();
  const list = new Watchlist(storage);
  for (const symbol of ["TSLA", "AAPL", "MSFT"]) list.toggle(symbol);
  assert.deepEqual(JSON.parse(storage.getItem(KEY)), ["AAPL", "MSFT", "TSLA"]);
});

test("the watchlist survives a page reload", () => {
  const storage = memoryStorage();
  const before = new Watchlist(storage);
  before.toggle("AAPL");
  before.toggle("NVDA");
  before.setOnly(true);
  const after = new Watchlist(storage);
  assert.equal(after.has("AAPL"), true);
  assert.equal(after.has("NVDA"), true);
  assert.equal(after.has("MSFT"), false);
  assert.equal(after.only, true);
});

test("corrupt JSON in storage gives an empty watchlist instead of breaking the page", () => {
  const storage = memoryStorage({ [KEY]: "[\"AAPL\", oops" });
  let list;
  assert.doesNotThrow(() => {
    list = new Watchlist(storage);
  });
  assert.equal(list.has("AAPL"), false);
  assert.deepEqual(list.subscription(), ["*"]);
  list.toggle("TSLA");
  assert.equal(storage.getItem(KEY), '["TSLA"]');
});

test("valid JSON that is not a list is treated as an empty watchlist", () => {
  for (const saved of ["null", '{"AAPL": true}', '"AAPL"', "42"]) {
    const list = new Watchlist(memoryStorage({ [KEY]: saved }));
    assert.equal(list.symbols.size, 0, `saved value ${saved}`);
    assert.equal(list.has("AAPL"), false, `saved value ${saved}`);
  }
});

test("non-string entries in the saved list are dropped", () => {
  const list = new Watchlist(memoryStorage({ [KEY]: '["AAPL", 7, null, {"s": "X"}, "MSFT"]' }));
  assert.deepEqual([...list.symbols].sort(), ["AAPL", "MSFT"]);
});

test("turning 'only watched' on and off is saved to storage", () => {
  const storage = memoryStorage();
  const list = new Watchlist(storage);
  list.setOnly(true);
  assert.equal(list.only, true);
  assert.equal(storage.getItem(ONLY_KEY), "1");
  list.setOnly(false);
  assert.equal(list.only, false);
  assert.equal(storage.getItem(ONLY_KEY), "0");
  assert.equal(new Watchlist(storage).only, false);
});

test("subscription() is every symbol while 'only watched' is off, even with symbols watched", () => {
  const list = new Watchlist(memoryStorage());
  list.toggle("AAPL");
  list.toggle("MSFT");
  assert.deepEqual(list.subscription(), ["*"]);
});

test("subscription() is the sorted watched symbols while 'only watched' is on", () => {
  const list = new Watchlist(memoryStorage());
  list.toggle("TSLA");
  list.toggle("AAPL");
  list.setOnly(true);
  assert.deepEqual(list.subscription(), ["AAPL", "TSLA"]);
});

test("subscription() is empty when 'only watched' is on and nothing is watched", () => {
  const list = new Watchlist(memoryStorage());
  list.setOnly(true);
  assert.deepEqual(list.subscription(), []);
});
