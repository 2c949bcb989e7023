// The watchlist lives in this browser only (localStorage), never on the server.
const KEY = "ticker.watchlist";
const ONLY_KEY = "ticker.watchOnly";

export class Watchlist {
  constructor(storage = window.localStorage) {
    this.storage = storage;
    let saved = [];
    try {
      saved = JSON.parse(storage.getItem(KEY) || "[]");
    } catch {
      saved = [];
    }
    this.symbols = new Set(Array.isArray(saved) ? saved.filter((s) => typeof s === "string") : []);
    this.only = storage.getItem(ONLY_KEY) === "1";
  }

  has(symbol) {
    return this.symbols.has(symbol);
  }

  toggle(symbol) {
    if (this.symbols.has(symbol)) this.symbols.delete(symbol);
    else this.symbols.add(symbol);
    this.storage.setItem(KEY, JSON.stringify([...this.symbols].sort()));
    return this.symbols.has(symbol);
  }

  setOnly(only) {
    this.only = only;
    this.storage.setItem(ONLY_KEY, only ? "1" : "0");
  }

  /** The symbols to subscribe to: all, or just the watched ones. */
  subscription() {
    return this.only ? [...this.symbols].sort() : ["*"];
  }
}
