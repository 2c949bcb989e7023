// The market screen: the user's watchlist (table, sparklines), the chart of one symbol, the whole
// market's movers, and search; wired to the transports. It subscribes only to what it shows.
import { mountAlerts, onPersonalFrame } from "./alerts.js";
import { Closes } from "./candles.js";
import { readConfig } from "./config.js";
import { renderMovers } from "./movers.js";
import {
  LatencyWindow,
  QuoteBook,
  SORT_FIELDS,
  arrow,
  describeSession,
  formatField,
  formatPrice,
  formatSigned,
  formatVolume,
  sessionState,
  sortSymbols,
  trend,
} from "./quotes.js";
import { FLASHES, arrange, indexRows, makeRow, renderBadge, renderQuote } from "./render.js";
import { SymbolSearch } from "./search.js";
import { drawSparkline } from "./spark.js";
import { TRANSPORTS, TransportChain, measuresSnapshots } from "./chain.js";
import { Watchlist, applyServerWatchlist } from "./watchlist.js";
import { AccountSync, loadAccountWatchlist, lookUpNames, mergeAnswered, offerMerge, signedInUser } from "./account.js";

const MOVERS = 10;
const CANDLES = 120;
const SORT_KEY = "ticker.sort";
const CHART_KEY = "ticker.chart";
const PAUSE_KEY = "ticker.paused";
// A symbol just listed in the admin is in the database (search finds it) a step before the
// web process hears of it from the market: an "unknown symbol" that soon after adding is asked again.
const LISTING_GRACE_MS = 5000;

const config = readConfig();
const initial = JSON.parse(document.getElementById("initial-quotes").textContent);
const book = new QuoteBook(initial.quotes);
// Signed in (issue 23), the watchlist is the account's: read before anything is shown, saved on every change.
const user = signedInUser();
const accountSymbols = user ? await loadAccountWatchlist() : null;
const sync = accountSymbols ? new AccountSync(accountSymbols, { onError: onSaveError }) : null;
const watchlist = new Watchlist(initial.defaults, window.localStorage, { account: sync });
const latency = new LatencyWindow(200);
const stats = { updates: 0, requests: 0 };
const el = {
  badge: document.getElementById("badge"),
  session: document.getElementById("session"),
  latency: document.getElementById("latency"),
  tbody: document.querySelector("#quotes tbody"),
  thead: document.querySelector("#quotes thead"),
  template: document.getElementById("row-template"),
  empty: document.getElementById("empty"),
  notice: document.getElementById("notice"),
  chart: document.getElementById("chart"),
  chartSymbol: document.getElementById("chart-symbol"),
  chartName: document.getElementById("chart-name"),
  chartQuote: document.getElementById("chart-quote"),
  movers: document.getElementById("movers"),
  updates: document.getElementById("stat-updates"),
  gaps: document.getElementById("stat-gaps"),
  requests: document.getElementById("stat-requests"),
  watchOnly: document.getElementById("watch-only"),
  banner: document.getElementById("feed-banner"),
  board: document.querySelector(".board"),
  search: document.getElementById("symbol-search"),
  results: document.getElementById("search-results"),
  pause: document.getElementById("pause"),
  pausedNote: document.getElementById("paused-note"),
};
const rows = indexRows(el.tbody);
// A signed-in user's alerts (the panel is rendered for them only): toasts, unread badge, list (alerts.js).
const alertsRoot = document.getElementById("alerts");
const alerts = alertsRoot ? mountAlerts(alertsRoot) : null;
// What each row shows: the quotes the sort orders by, so the order always matches the numbers on
// screen (while paused the book moves on and the rows do not).
const shown = new Map(); // symbol -> quote
const sparks = new Map(); // symbol -> Closes
// WCAG 2.3.3: no flash for those who asked their system for less motion (ticker.css turns off
// animations too); read at each tick, so a change of the setting applies at once.
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");
const addedAt = new Map(); // symbol -> when it was added (LISTING_GRACE_MS)
// The chart library (196 KB) loads beside the feed rather than before it: prices show first.
let chart = null;
const chartReady = import("./chart.js").then(({ CandleChart }) => (chart = new CandleChart(el.chart)));
let charted = null;
let chain = null;
let sort = loadSort();
// "Pause updates" (WCAG 2.2.2: auto-updating information can be paused): the board stands still while
// the connection stays open and the book keeps every quote (seq and gaps as ever); resuming shows them.
let paused = false;
let pendingMovers = null; // the movers frame that arrived while paused
let session = initial.session ?? null;
let status = { state: "connecting", detail: "", transport: "" };

function loadSort() {
  try {
    const saved = JSON.parse(localStorage.getItem(SORT_KEY));
    if (saved && saved.key in SORT_FIELDS && ["ascending", "descending"].includes(saved.direction)) return saved;
  } catch {
    // none saved
  }
  return null;
}

/** What the page subscribes to: its watchlist and the charted symbol; movers unless "Watchlist only". */
function subscription() {
  return watchlist.subscription(charted);
}

function follow() {
  chain?.setSymbols(subscription());
}

// --- the feed's state: the badge and the banner -----------------------------------------

/**
 * Old prices must never look live. Two things can make them stale: the
 * connection is lost (the transport reports "reconnecting"), or the server says its
 * market feed is interrupted (a heartbeat, or a long-poll answer). Each clears
 * only on its own evidence: any message after a reconnect for the first, a
 * "live" heartbeat or a live quotes batch for the second. Meanwhile the board
 * (table, chart, movers) is greyed out under a banner, and the badge says so.
 */
const stale = { connection: false, feed: false };

function showStale() {
  const lost = status.state === "busy" ? "Server busy, retrying." : "Connection lost, reconnecting.";
  const why = stale.connection ? lost : stale.feed ? "Market feed interrupted." : "";
  el.banner.hidden = !why;
  el.banner.textContent = why ? `${why} Prices shown are the last received, not live.` : "";
  el.board.classList.toggle("stale", Boolean(why));
  showBadge();
}

function showBadge() {
  const { state, detail, transport } = status;
  const interrupted = stale.feed && (state === "live" || state === "polling");
  renderBadge(el.badge, interrupted ? "interrupted" : state, detail, transport);
}

function setStale(part, value) {
  if (stale[part] === value) return;
  stale[part] = value;
  showStale();
}

function showSession() {
  el.session.textContent = describeSession(session);
  el.session.dataset.state = sessionState(session) ?? "";
}

// --- the table -------------------------------------------------------------------------

function notice(text) {
  el.notice.textContent = text;
}

/** Makes the table's rows the watchlist's: removes rows that left, adds empty ones for new symbols, orders them. */
function syncRows() {
  for (const [symbol, row] of rows) {
    if (watchlist.has(symbol)) continue;
    row.tr.remove();
    rows.delete(symbol);
    sparks.delete(symbol);
    shown.delete(symbol);
  }
  for (const symbol of watchlist.symbols) {
    if (rows.has(symbol)) continue;
    const row = makeRow(el.template, symbol, watchlist.name(symbol));
    rows.set(symbol, row);
    const quote = book.quotes.get(symbol);
    if (quote) showQuote(row, quote);
  }
  order();
  el.empty.hidden = rows.size > 0;
  markCharted();
}

/** Writes a quote into its row; the row's price flashes on a tick unless the user asked for less motion. */
function showQuote(row, quote, { flash = false } = {}) {
  renderQuote(row, quote, shown.get(row.symbol), { flash: flash && !reducedMotion.matches });
  shown.set(row.symbol, quote);
}

/**
 * Puts the rows in the sort's order (or the watchlist's) by the values they show. Called in the same
 * task as every change of those values, so the table is in order at every paint (issue 20: re-sorting
 * once a second left it out of order most of the time); rows move only when the order changed, and the
 * row holding the keyboard focus keeps it (render.js, arrange). The scroll position stays: ticker.css
 * keeps the browser's scroll anchoring off the table's rows.
 */
function order() {
  const symbols = sort ? sortSymbols(watchlist.symbols, shown, sort.key, sort.direction) : watchlist.symbols;
  const focused = el.tbody.contains(document.activeElement) ? document.activeElement.closest("tr") : null;
  arrange(
    el.tbody,
    symbols.map((symbol) => rows.get(symbol).tr),
    focused,
  );
}

function showSort() {
  for (const th of el.thead.querySelectorAll("th[data-sort]")) {
    th.setAttribute("aria-sort", sort?.key === th.dataset.sort ? sort.direction : "none");
  }
}

/** A header's button: sort by it (numbers largest first), then the other way, then back to the watchlist's order. */
function sortBy(key) {
  const first = key === "symbol" ? "ascending" : "descending";
  const second = first === "ascending" ? "descending" : "ascending";
  if (sort?.key !== key) sort = { key, direction: first };
  else if (sort.direction === first) sort = { key, direction: second };
  else sort = null;
  if (sort) localStorage.setItem(SORT_KEY, JSON.stringify(sort));
  else localStorage.removeItem(SORT_KEY);
  showSort();
  order();
}

function drawSpark(symbol) {
  const row = rows.get(symbol);
  const closes = sparks.get(symbol);
  if (!row || !closes) return;
  const quote = book.quotes.get(symbol);
  drawSparkline(row.spark, closes.values, { trend: trend(quote?.change ?? 0), prevClose: quote?.prev_close ?? null });
}

/** One request for the sparklines of the whole list (GET /api/quotes/sparklines/), never one a row. */
async function loadSparklines(symbols) {
  if (!symbols.length) return;
  const query = encodeURIComponent(symbols.join(","));
  let answer;
  try {
    const response = await fetch(`/api/quotes/sparklines/?symbols=${query}`);
    stats.requests += 1;
    if (!response.ok) return; // an unknown symbol: the transport's error says which, and it is dropped
    answer = await response.json();
  } catch {
    return;
  }
  for (const [symbol, values] of Object.entries(answer.sparklines ?? {})) {
    if (!rows.has(symbol)) continue;
    const closes = new Closes(values);
    const quote = book.quotes.get(symbol);
    if (quote) closes.apply(quote);
    sparks.set(symbol, closes);
    drawSpark(symbol);
  }
}

function addSymbol({ symbol, name }) {
  if (watchlist.has(symbol)) {
    notice(`${symbol} is on your watchlist already.`);
    return selectChart(symbol);
  }
  if (watchlist.full) return notice(`The watchlist holds at most ${watchlist.max} symbols: remove one first.`);
  watchlist.add(symbol, name);
  addedAt.set(symbol, Date.now());
  syncRows();
  notice(`Added ${symbol} (${name}) to your watchlist.`);
  selectChart(symbol); // also follows the new subscription
  loadSparklines([symbol]);
}

function removeSymbol(symbol) {
  watchlist.remove(symbol);
  if (symbol !== charted) book.quotes.delete(symbol);
  syncRows();
  follow();
  notice(`Removed ${symbol} from your watchlist.`);
}

/** Symbols no longer listed (a delisted frame, or an unknown_symbol answer): their rows go, with a notice. */
function dropUnlisted(symbols) {
  const gone = symbols.filter((s) => watchlist.has(s) || s === charted);
  if (!gone.length) return;
  watchlist.remove(...gone);
  for (const symbol of gone) {
    book.quotes.delete(symbol);
    addedAt.delete(symbol);
  }
  syncRows();
  const names = gone.join(", ");
  notice(`${names} ${gone.length > 1 ? "are" : "is"} no longer listed: removed from your watchlist.`);
  if (gone.includes(charted)) selectChart(watchlist.symbols[0] ?? null);
  else follow();
}

/** A save on the account refused: a symbol no longer listed leaves the list (saved again without it). */
function onSaveError(error) {
  if (error.code === "unknown_symbol" && error.symbols?.length) return dropUnlisted(error.symbols);
  notice(`Your watchlist could not be saved on your account: ${error.message}`);
}

/** The account's watchlist changed on another tab or device (a watchlist frame): show it, follow it. */
function onWatchlistReplaced() {
  const fresh = watchlist.symbols.filter((symbol) => !rows.has(symbol));
  syncRows();
  if (charted && !watchlist.has(charted)) selectChart(watchlist.symbols[0] ?? null);
  else follow();
  loadSparklines(fresh);
  notice("Your watchlist changed on another tab or device.");
}

/** Signed in: names this browser does not know, and the offer to merge this browser's own list (once). */
function startAccount() {
  watchlist.onReplace = onWatchlistReplaced;
  const nameless = watchlist.symbols.filter((symbol) => !watchlist.name(symbol));
  lookUpNames(nameless, (symbol, name) => {
    watchlist.setName(symbol, name);
    const row = rows.get(symbol);
    if (row) row.name.textContent = name;
    if (symbol === charted) el.chartName.textContent = name;
  });
  const extra = watchlist.browserOnly();
  if (!extra.length || mergeAnswered(user)) return;
  offerMerge(el.board, {
    user,
    count: extra.length,
    onMerge: () => {
      const added = watchlist.merge();
      const left = extra.length - added;
      syncRows();
      follow();
      loadSparklines(extra.map((e) => e.symbol));
      notice(
        `Added ${added} symbol${added === 1 ? "" : "s"} from this browser to your account's watchlist.` +
          (left ? ` ${left} did not fit: it holds at most ${watchlist.max}.` : ""),
      );
    },
  });
}

function onServerError(frame) {
  if (frame.code !== "unknown_symbol") return notice(`The server said: ${frame.message}`);
  const now = Date.now();
  const symbols = frame.symbols ?? [];
  const young = symbols.filter((s) => now - (addedAt.get(s) ?? -Infinity) < LISTING_GRACE_MS);
  dropUnlisted(symbols.filter((s) => !young.includes(s)));
  if (young.length) setTimeout(follow, 1000);
}

// --- the chart -------------------------------------------------------------------------

function markCharted() {
  for (const [symbol, row] of rows) row.tr.classList.toggle("selected", symbol === charted);
}

function showChartQuote() {
  const quote = book.quotes.get(charted);
  if (!quote) {
    el.chartQuote.textContent = "";
    return;
  }
  const change = `${arrow(quote.change)} ${formatSigned(quote.change)} (${formatSigned(quote.change_pct, "%")})`.trim();
  const range = `O ${formatField(quote, "open")} H ${formatField(quote, "high")} L ${formatField(quote, "low")}`;
  el.chartQuote.textContent = `${formatPrice(quote.price)} ${change} · ${range} · Vol ${formatVolume(quote.volume)}${
    quote.halted ? " · HALTED" : ""
  }`;
  el.chartQuote.className = `chart-quote ${trend(quote.change)}`;
}

async function selectChart(symbol) {
  charted = symbol;
  markCharted();
  follow();
  el.chartSymbol.textContent = symbol ?? "Chart";
  el.chartName.textContent = symbol ? watchlist.name(symbol) : "";
  el.chart.setAttribute("aria-label", `One-minute candles and volume of ${symbol ?? "no symbol"}`);
  showChartQuote();
  if (symbol) localStorage.setItem(CHART_KEY, symbol);
  const asked = symbol ? fetchCandles(symbol) : null;
  await chartReady;
  if (charted !== symbol) return; // another symbol was picked meanwhile
  chart.show(symbol ?? "");
  const candles = await asked;
  if (charted !== symbol || !candles) return;
  chart.load(candles, book.quotes.get(symbol));
}

async function fetchCandles(symbol) {
  try {
    const response = await fetch(`/api/quotes/${encodeURIComponent(symbol)}/candles/?limit=${CANDLES}`);
    stats.requests += 1;
    return response.ok ? (await response.json()).candles : null;
  } catch {
    return null;
  }
}

// --- the feed ----------------------------------------------------------------------------

function receive(quotes, { snapshot, measure }) {
  const now = Date.now();
  // When the page first showed prices from the feed (performance.getEntriesByName): the first-load check.
  if (quotes.length && !performance.getEntriesByName("ticker:first-quotes").length) performance.mark("ticker:first-quotes");
  // The book takes every quote, paused or not: seq and gap bookkeeping never stop.
  const { changed, gapped } = book.apply(quotes, { snapshot });
  for (const { quote, prev } of changed) {
    const row = rows.get(quote.symbol);
    if (row) {
      if (!sparks.has(quote.symbol)) sparks.set(quote.symbol, new Closes([]));
      sparks.get(quote.symbol).apply(quote);
      if (!paused) {
        showQuote(row, quote, { flash: true });
        drawSpark(quote.symbol);
      }
    }
    // Paused, the chart misses these quotes: resuming loads its candles again (selectChart).
    if (quote.symbol === charted && !paused) {
      chart?.apply(quote);
      showChartQuote();
    }
    if (measure && prev) latency.add(now - quote.ts);
  }
  stats.updates += changed.length;
  // A seq gap means an update was lost on the way: ask for a fresh snapshot.
  if (gapped.length) chain.resync(gapped);
  if (changed.length && sort && !paused) order();
}

// --- pause --------------------------------------------------------------------------------

/**
 * Pauses or resumes the board: table, flashes, sparklines, chart, movers and the counters below stand
 * still while paused. The connection badge, the feed banner and the session keep telling the truth.
 * Resuming shows the book's current quotes at once, the movers' last frame and the chart reloaded.
 */
function setPaused(value, { save = true } = {}) {
  paused = value;
  if (save) localStorage.setItem(PAUSE_KEY, paused ? "1" : "0");
  el.pause.setAttribute("aria-pressed", String(paused));
  el.board.classList.toggle("paused", paused);
  if (paused) {
    for (const cell of el.tbody.querySelectorAll(".price")) cell.classList.remove(...FLASHES);
    const at = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    el.pausedNote.textContent = `Paused at ${at}: prices shown are not updating. Press again to resume.`;
    return;
  }
  el.pausedNote.textContent = "";
  for (const [symbol, row] of rows) {
    const quote = book.quotes.get(symbol);
    if (quote && quote !== shown.get(symbol)) showQuote(row, quote);
    drawSpark(symbol);
  }
  order();
  if (pendingMovers) renderMovers(el.movers, pendingMovers);
  pendingMovers = null;
  showStats();
  if (charted) selectChart(charted);
}

const handlers = {
  status: (state, detail, transport) => {
    status = { state, detail, transport };
    // "busy": the server is full (or not ready) and the transport waits to try again (transport.js).
    stale.connection = state === "reconnecting" || state === "busy";
    showStale(); // the banner and the badge
    if (state === "live") alerts?.transport(transport); // pull transports fetch the alerts list instead
  },
  // A poll or long-poll answer is a snapshot, but it is also how they deliver changes: measure it.
  snapshot: (quotes) => {
    setStale("connection", false);
    // Polling reads the database, which the market writes even while Redis is away.
    if (chain.transport === "polling") setStale("feed", false);
    receive(quotes, { snapshot: true, measure: measuresSnapshots(chain.transport) });
    alerts?.snapshot(chain.transport); // after a reconnect or a held-back stretch: an alert frame may have been missed
  },
  // A pushed batch comes straight from the market: the feed is live.
  quotes: (quotes) => {
    setStale("connection", false);
    setStale("feed", false);
    receive(quotes, { snapshot: false, measure: true });
  },
  // The server's heartbeat: "interrupted" while it gets no market data (Redis or the market down).
  feedState: (state) => {
    setStale("connection", false);
    setStale("feed", state !== "live");
  },
  session: (value) => {
    session = value;
    showSession();
  },
  movers: (frame) => {
    if (paused) pendingMovers = frame;
    else renderMovers(el.movers, frame);
  },
  delisted: (symbols) => dropUnlisted(symbols),
  // A signed-in user's own frames: alert, watchlist, signed_out (docs/protocol.md, "Personal frames").
  personal: (frame) => onPersonalFrame(frame, alerts),
  error: onServerError,
  request: () => (stats.requests += 1),
};
// The account's watchlist changed in another tab or on another device (a personal "watchlist" frame, which
// alerts.js's onPersonalFrame hands on as this event): show it and resubscribe.
document.addEventListener("ticker:watchlist", (event) => applyServerWatchlist(event.detail.symbols));

/** "auto" runs the chain (WebSocket, SSE, long-poll, polling); a transport name pins that one. */
function connect(choice) {
  chain?.stop();
  chain = new TransportChain(handlers, {
    symbols: subscription(),
    movers: watchlist.only ? 0 : MOVERS,
    pinned: TRANSPORTS.includes(choice) ? choice : null,
    upgradeMs: config.upgradeMs,
    transportOptions: { silenceMs: config.silenceMs },
  });
  latency.samples = [];
  chain.start();
}

/** "Watchlist only": the movers panel is hidden and its feed stopped; the page follows only its own symbols. */
function applyWatchOnly() {
  el.watchOnly.checked = watchlist.only;
  el.movers.hidden = watchlist.only;
  chain?.setMovers(watchlist.only ? 0 : MOVERS);
}

// --- events ------------------------------------------------------------------------------

el.tbody.addEventListener("click", (event) => {
  const tr = event.target.closest("tr[data-symbol]");
  if (!tr) return;
  if (event.target.closest(".remove")) {
    // Keep the keyboard in the table: on the next row's remove button, or the search box.
    const next = tr.nextElementSibling ?? tr.previousElementSibling;
    removeSymbol(tr.dataset.symbol);
    (next?.querySelector(".remove") ?? el.search).focus();
  } else if (event.target.closest(".pick")) {
    selectChart(tr.dataset.symbol);
  }
});

el.thead.addEventListener("click", (event) => {
  const th = event.target.closest("th[data-sort]");
  if (th && event.target.closest("button")) sortBy(th.dataset.sort);
});

el.movers.addEventListener("click", (event) => {
  const li = event.target.closest("li[data-symbol]");
  if (li && event.target.closest(".pick")) selectChart(li.dataset.symbol);
});

// A flash ends by itself; its class goes, so the next tick starts a fresh one.
el.tbody.addEventListener("animationend", (event) => event.target.classList.remove(...FLASHES));

el.pause.addEventListener("click", () => setPaused(!paused));

el.watchOnly.addEventListener("change", () => {
  watchlist.setOnly(el.watchOnly.checked);
  applyWatchOnly();
});

for (const radio of document.querySelectorAll("input[name=transport]")) {
  radio.addEventListener("change", () => radio.checked && connect(radio.value));
}

new SymbolSearch(el.search, el.results, { onChoose: addSymbol, has: (symbol) => watchlist.has(symbol) });

function showStats() {
  const p50 = latency.percentile(50);
  el.latency.textContent = p50 === null ? "latency —" : `latency p50 ${Math.round(p50)} ms`;
  el.updates.textContent = String(stats.updates);
  el.gaps.textContent = String(book.gaps);
  el.requests.textContent = String(stats.requests);
}

setInterval(() => {
  if (!paused) showStats();
  if (session) showSession();
}, 500);

// --- start -------------------------------------------------------------------------------

const pinned = new URLSearchParams(window.location.search).get("transport");
const choice = TRANSPORTS.includes(pinned) ? pinned : "auto";
document.querySelector(`input[name=transport][value=${choice}]`).checked = true;
// The server's rows hold their quotes unformatted (ticker/views.py, dashboard): written here with the
// one formatter, from the same quotes (initial-quotes), before anything reads the rows.
for (const [symbol, row] of rows) if (book.quotes.has(symbol)) showQuote(row, book.quotes.get(symbol));
syncRows();
showSort();
showSession();
applyWatchOnly();
if (localStorage.getItem(PAUSE_KEY) === "1") setPaused(true, { save: false });
const saved = localStorage.getItem(CHART_KEY);
charted = saved && (watchlist.has(saved) || !watchlist.size) ? saved : (watchlist.symbols[0] ?? null);
connect(choice);
selectChart(charted);
loadSparklines(watchlist.symbols);
if (sync) startAccount();
else if (user) notice("Your account's watchlist could not be read: this browser's list is shown, and changes stay here.");
