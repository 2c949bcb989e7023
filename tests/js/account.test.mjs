import { test } from "node:test";
import assert from "node:assert/strict";

import { AccountSync, csrfToken } from "../../static/ticker/js/account.js";
import { MAX_ACCOUNT_WATCHLIST, Watchlist, applyServerWatchlist } from "../../static/ticker/js/watchlist.js";

const KEY = "ticker.watchlist.v2";
const DEFAULTS = [
  { symbol: "AAPL", name: "Apple Inc." },
  { symbol: "MSFT", name: "Microsoft Corp." },
];

function memoryStorage(initial = {}) {
  const items = new Map(Object.entries(initial));
  return { items, getItem: (k) => (items.has(k) ? items.get(k) : null), setItem: (k, v) => items.set(k, String(v)) };
}

/** A fetch stand-in that records PUTs and answers each with the list it got, after `gate` resolves. */
function recordingFetch() {
  const puts = [];
  let release;
  const fetcher = async (url, init) => {
    const symbols = JSON.parse(init.body).symbols;
    puts.push({ symbols, token: init.headers["X-CSRFToken"] });
    if (puts.length === 1) await new Promise((resolve) => (release = resolve));
    return { ok: true, json: async () => ({ symbols }) };
  };
  return { fetcher, puts, release: () => release() };
}

test("csrfToken reads the csrftoken cookie among others", () => {
  assert.equal(csrfToken("sessionid=abc; csrftoken=T0k%3D; theme=dark"), "T0k=");
  assert.equal(csrfToken("sessionid=abc"), "");
});

test("signed in, the watchlist is the account's, saved on the account and never in localStorage", async () => {
  const storage = memoryStorage({ [KEY]: JSON.stringify([{ symbol: "KO", name: "Coca-Cola" }]) });
  const { fetcher, puts, release } = recordingFetch();
  const sync = new AccountSync(["MSFT"], { fetcher, cookies: () => "csrftoken=abc" });
  const list = new Watchlist(DEFAULTS, storage, { account: sync });
  assert.deepEqual(list.symbols, ["MSFT"]);
  assert.equal(list.name("MSFT"), "Microsoft Corp.", "names come from the defaults and the browser's list");
  assert.equal(list.max, MAX_ACCOUNT_WATCHLIST);
  list.add("KO", "Coca-Cola");
  list.add("AAPL", "Apple Inc.");
  list.remove("MSFT");
  release();
  await new Promise((resolve) => setTimeout(resolve, 0));
  await new Promise((resolve) => setTimeout(resolve, 0));
  // One PUT at a time: the first, then only the latest list, each with the cookie's token.
  assert.deepEqual(
    puts.map((p) => p.symbols),
    [["MSFT", "KO"], ["KO", "AAPL"]],
  );
  assert.ok(puts.every((p) => p.token === "abc"));
  assert.deepEqual(JSON.parse(storage.getItem(KEY)), [{ symbol: "KO", name: "Coca-Cola" }], "the browser's list stays");
  // The echoes of its own saves change nothing; another device's list replaces the shown one.
  let replaced = 0;
  list.onReplace = () => (replaced += 1);
  assert.equal(applyServerWatchlist(["MSFT", "KO"]), false);
  assert.equal(applyServerWatchlist(["KO", "AAPL"]), false);
  assert.equal(applyServerWatchlist(["TSLA", "KO"]), true);
  assert.deepEqual(list.symbols, ["TSLA", "KO"]);
  assert.equal(list.name("KO"), "Coca-Cola");
  assert.equal(replaced, 1);
  assert.equal(puts.length, 2, "a list from the server is not saved back");
});

test("the merge adds the browser's own symbols after the account's, as many as fit", () => {
  const own = Array.from({ length: 60 }, (_, i) => ({ symbol: `S${i}`, name: `Name ${i}` }));
  const storage = memoryStorage({ [KEY]: JSON.stringify(own) });
  const saved = [];
  const account = { symbols: ["S0", "AAPL"], save: (s) => saved.push(s), echoes: () => false };
  const list = new Watchlist(DEFAULTS, storage, { account });
  assert.equal(list.browserOnly().length, 59);
  assert.equal(list.merge(), MAX_ACCOUNT_WATCHLIST - 2);
  assert.deepEqual(list.symbols.slice(0, 3), ["S0", "AAPL", "S1"]);
  assert.equal(saved.length, 1, "saved once");
});

test("anonymous, a watchlist frame changes nothing", () => {
  const list = new Watchlist(DEFAULTS, memoryStorage());
  assert.equal(applyServerWatchlist(["TSLA"]), false);
  assert.deepEqual(list.symbols, ["AAPL", "MSFT"]);
});
