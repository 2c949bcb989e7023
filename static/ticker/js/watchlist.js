// The watchlist lives in this browser only (localStorage), never on the server.
// It is the screen's table: the symbols the page shows, follows and subscribes to.
const KEY = "ticker.watchlist.v2";
const ONLY_KEY = "ticker.watchOnly";
// A subscription names at most 100 symbols (protocol.MAX_SYMBOLS_PER_MESSAGE, the ?symbols= limit):
// the watchlist, and one more for a charted symbol that is not on it.
export const MAX_WATCHLIST = 99;

/**
 * The user's symbols, in the order they were added, each with its company name
 * (shown in the table; a quote carries no name). A browser that never saved one
 * starts from `defaults` (the 30 seeded symbols, from the page).
 *
 * `only` is "Watchlist only": the screen shows just the watchlist and the chart,
 * without the whole market's movers, and subscribes to nothing else.
 */
export class Watchlist {
  constructor(defaults = [], storage = window.localStorage) {
    this.storage = storage;
    this.entries = new Map();
    const saved = parse(storage.getItem(KEY));
    for (const { symbol, name } of saved ?? defaults) {
      if (this.entries.size < MAX_WATCHLIST) this.entries.set(symbol, name ?? "");
    }
    this.only = storage.getItem(ONLY_KEY) === "1";
  }

  get symbols() {
    return [...this.entries.keys()];
  }

  get size() {
    return this.entries.size;
  }

  get full() {
    return this.entries.size >= MAX_WATCHLIST;
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
