// The watchlist: the screen's table, the symbols the page shows, follows and subscribes to. Anonymous, it
// lives in this browser only (localStorage). Signed in (issue 23), it is the account's (GET/PUT /api/watchlist/,
// static/ticker/js/account.js): every change is saved there, and the browser's own list stays as it was.
const KEY = "ticker.watchlist.v2";
const ONLY_KEY = "ticker.watchOnly";
// A subscription names at most 100 symbols (protocol.MAX_SYMBOLS_PER_MESSAGE, the ?symbols= limit):
// the watchlist, and one more for a charted symbol that is not on it.
export const MAX_WATCHLIST = 99;
// An account's watchlist holds at most this many (ticker.models.WATCHLIST_MOST_SYMBOLS).
export const MAX_ACCOUNT_WATCHLIST = 50;

// The page's watchlist, for applyServerWatchlist.
let current = null;

/**
 * A `{"type": "watchlist", "symbols": [...]}` frame (the user's watchlist changed on another tab or device):
 * the page shows that list and resubscribes to match. Ignored when nobody is signed in, when it is the list
 * shown, and when it is the echo of this page's own save. True when the shown list changed.
 */
export function applyServerWatchlist(symbols) {
  return current?.applyServer(symbols) ?? false;
}

/**
 * The user's symbols, in the order they were added, each with its company name
 * (shown in the table; a quote carries no name). A browser that never saved one
 * starts from `defaults` (the 30 seeded symbols, from the page).
 *
 * `only` is "Watchlist only": the screen shows just the watchlist and the chart,
 * without the whole market's movers, and subscribes to nothing else.
 *
 * `account` (signed in): `{ symbols, save(symbols), echoes(symbols) }` (account.js, AccountSync with the
 * account's list): the watchlist starts from the account's symbols and saves there, never in localStorage.
 * `onReplace` is called after the list was replaced from the server (applyServer).
 */
export class Watchlist {
  constructor(defaults = [], storage = window.localStorage, { account = null } = {}) {
    this.storage = storage;
    this.account = account;
    this.max = account ? MAX_ACCOUNT_WATCHLIST : MAX_WATCHLIST;
    this.onReplace = null;
    this.entries = new Map();
    // The browser's own list (or the defaults): the names the page knows, and what a merge offers.
    this.browser = (parse(storage.getItem(KEY)) ?? defaults).slice(0, MAX_WATCHLIST);
    this.names = new Map([...defaults, ...this.browser].map(({ symbol, name }) => [symbol, name ?? ""]));
    for (const { symbol, name } of account ? account.symbols.map((symbol) => ({ symbol })) : this.browser) {
      if (this.entries.size < this.max) this.entries.set(symbol, name ?? this.names.get(symbol) ?? "");
    }
    this.only = storage.getItem(ONLY_KEY) === "1";
    current = this;
  }

  get symbols() {
    return [...this.entries.keys()];
  }

  get size() {
    return this.entries.size;
  }

  get full() {
    return this.entries.size >= this.max;
  }

  has(symbol) {
    return this.entries.has(symbol);
  }

  name(symbol) {
    return this.entries.get(symbol) ?? "";
  }

  /** Adds a symbol at the end; false when it is already there or the list is full. */
  add(symbol, name = "") {
    if (this.entries.has(symbol) || this.full) return false;
    this.entries.set(symbol, name);
    this.save();
    return true;
  }

  /** Removes symbols (unwatched, or delisted); true when any was there. */
  remove(...symbols) {
    const removed = symbols.filter((s) => this.entries.delete(s));
    if (removed.length) this.save();
    return removed.length > 0;
  }

  /** A name learnt later (a symbol of the account this browser never saw). */
  setName(symbol, name) {
    if (this.entries.has(symbol)) this.entries.set(symbol, name);
    this.names.set(symbol, name);
  }

  /** Signed in: the symbols of this browser's own list that are not on the account (what a merge would add). */
  browserOnly() {
    return this.browser.filter(({ symbol }) => !this.entries.has(symbol));
  }

  /** Adds the browser's own symbols after the account's, as many as fit, saved once; how many were added. */
  merge() {
    let added = 0;
    for (const { symbol, name } of this.browserOnly()) {
      if (this.full) break;
      this.entries.set(symbol, name ?? "");
      added += 1;
    }
    if (added) this.save();
    return added;
  }

  /** The account's list from the server: shown as it is, not saved back (see applyServerWatchlist). */
  applyServer(symbols) {
    if (!this.account || !Array.isArray(symbols)) return false;
    if (this.account.echoes(symbols)) return false;
    if (symbols.length === this.size && symbols.every((s, i) => this.symbols[i] === s)) return false;
    const entries = new Map();
    for (const symbol of symbols) entries.set(symbol, this.entries.get(symbol) || this.names.get(symbol) || "");
    this.entries = entries;
    this.onReplace?.();
    return true;
  }

  setOnly(only) {
    this.only = only;
    this.storage.setItem(ONLY_KEY, only ? "1" : "0");
  }

  /** The symbols to subscribe to: the watchlist and the charted symbol, sorted, each once. */
  subscription(charted = null) {
    const symbols = new Set(this.entries.keys());
    if (charted) symbols.add(charted);
    return [...symbols].sort();
  }

  save() {
    if (this.account) return this.account.save(this.symbols);
    const list = [...this.entries].map(([symbol, name]) => ({ symbol, name }));
    this.storage.setItem(KEY, JSON.stringify(list));
  }
}

/** The saved list, or null when there is none (or it is unreadable): then the defaults apply. */
function parse(text) {
  if (text === null) return null;
  try {
    const list = JSON.parse(text);
    if (!Array.isArray(list)) return null;
    return list.filter((e) => e && typeof e.symbol === "string").map((e) => ({ symbol: e.symbol, name: String(e.name ?? "") }));
  } catch {
    return null;
  }
}
