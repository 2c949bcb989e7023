// The signed-in user's side of the page (issue 23): who is signed in (templates/base.html, #account), the
// watchlist on the account (GET/PUT /api/watchlist/, docs/protocol.md "Watchlist"), and the offer to merge
// this browser's own list into it on the first sign-in here.

const URL = "/api/watchlist/";
const ANSWERED_KEY = "ticker.watchlist.merge-answered.";
// How many of this page's own saves are remembered to recognise their echo (a watchlist frame).
const ECHOES = 10;

/** The signed-in username, or null when nobody is (the header's data-user). */
export function signedInUser(doc = document) {
  return doc.getElementById("account")?.dataset.user || null;
}

/** Django's CSRF token, from the csrftoken cookie (sent back in X-CSRFToken). */
export function csrfToken(cookies = document.cookie) {
  for (const part of cookies.split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(value.join("="));
  }
  return "";
}

/** The account's symbols, or null when they could not be read (signed out meanwhile, network down). */
export async function loadAccountWatchlist(fetcher = fetch) {
  try {
    const response = await fetcher(URL, { headers: { Accept: "application/json" } });
    if (!response.ok) return null;
    const { symbols } = await response.json();
    return Array.isArray(symbols) ? symbols : null;
  } catch {
    return null;
  }
}

/**
 * Saves the watchlist on the account: one PUT at a time, the latest list after it (the lists in between are
 * never sent). `onError(error)`: the server's JSON error ({code, message, ...}) or a network failure's.
 */
export class AccountSync {
  constructor(symbols, { onError = () => {}, fetcher = (...args) => fetch(...args), cookies = () => document.cookie } = {}) {
    this.symbols = symbols;
    this.onError = onError;
    this.fetcher = fetcher;
    this.cookies = cookies;
    this.pending = null;
    this.busy = false;
    this.sent = [];
  }

  save(symbols) {
    this.pending = [...symbols];
    if (!this.busy) this.flush();
  }

  /** Whether `symbols` is the echo of one of this page's saves (each save is published once): forgotten then. */
  echoes(symbols) {
    const at = this.sent.indexOf(JSON.stringify(symbols));
    if (at < 0) return false;
    this.sent.splice(at, 1);
    return true;
  }

  async flush() {
    this.busy = true;
    while (this.pending) {
      const symbols = this.pending;
      this.pending = null;
      const body = JSON.stringify({ symbols });
      try {
        const response = await this.fetcher(URL, {
          method: "PUT",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(this.cookies()) },
          body,
        });
        if (response.ok) {
          this.sent.push(JSON.stringify((await response.json()).symbols));
          this.sent.splice(0, Math.max(0, this.sent.length - ECHOES));
        } else {
          this.onError(await response.json().catch(() => ({ code: "http", message: `HTTP ${response.status}` })));
        }
      } catch (error) {
        this.onError({ code: "network", message: `the server could not be reached (${error.message})` });
      }
    }
    this.busy = false;
  }
}

/** Whether `user` already answered the merge offer in this browser. */
export function mergeAnswered(user, storage = window.localStorage) {
  return storage.getItem(ANSWERED_KEY + user) === "1";
}

/**
 * The merge offer, once per user and browser, never applied silently: "Add your N symbols from this browser
 * to your account's watchlist?" with Merge and Keep account's. Inserted before `where`.
 */
export function offerMerge(where, { user, count, onMerge, storage = window.localStorage }) {
  const banner = document.createElement("div");
  banner.id = "merge-offer";
  banner.className = "merge-offer";
  banner.setAttribute("role", "region");
  banner.setAttribute("aria-label", "Merge this browser's watchlist");
  const text = document.createElement("p");
  text.textContent = `Add your ${count} symbol${count === 1 ? "" : "s"} from this browser to your account's watchlist?`;
  const merge = document.createElement("button");
  merge.type = "button";
  merge.id = "merge-yes";
  merge.textContent = "Merge";
  const keep = document.createElement("button");
  keep.type = "button";
  keep.id = "merge-no";
  keep.textContent = "Keep account's";
  banner.append(text, merge, keep);
  const answer = (merging) => {
    storage.setItem(ANSWERED_KEY + user, "1");
    banner.remove();
    if (merging) onMerge();
  };
  merge.addEventListener("click", () => answer(true));
  keep.addEventListener("click", () => answer(false));
  where.before(banner);
  return banner;
}

/** Company names of symbols this browser never saw (the account's, from another device), by symbol search. */
export async function lookUpNames(symbols, onName, fetcher = fetch) {
  await Promise.all(
    symbols.map(async (symbol) => {
      try {
        const response = await fetcher(`/api/symbols/?q=${encodeURIComponent(symbol)}&limit=5`);
        if (!response.ok) return;
        const found = (await response.json()).results?.find((r) => r.symbol === symbol);
        if (found) onName(symbol, found.name);
      } catch {
        // the row keeps its symbol without a name
      }
    }),
  );
}
