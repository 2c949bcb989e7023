// The dashboard: wires the transports to the quotes table, chart and badge.
import { drawChart, drawSparkline } from "./chart.js";
import { readConfig } from "./config.js";
import { LatencyWindow, QuoteBook } from "./quotes.js";
import { indexRows, renderBadge, renderQuote, renderStar } from "./render.js";
import { TRANSPORTS, TransportChain, measuresSnapshots } from "./chain.js";
import { Watchlist } from "./watchlist.js";

const SPARK_POINTS = 60;

const config = readConfig();
const initial = JSON.parse(document.getElementById("initial-quotes").textContent);
const book = new QuoteBook(initial.quotes);
const rows = indexRows(document.querySelector("#quotes tbody"));
const watchlist = new Watchlist();
const latency = new LatencyWindow(200);
const sparks = new Map([...rows.keys()].map((s) => [s, [book.quotes.get(s)?.price].filter(Boolean)]));
const stats = { updates: 0, requests: 0 };
const el = {
  badge: document.getElementById("badge"),
  latency: document.getElementById("latency"),
  chart: document.getElementById("chart"),
  chartTitle: document.getElementById("chart-title"),
  updates: document.getElementById("stat-updates"),
  gaps: document.getElementById("stat-gaps"),
  requests: document.getElementById("stat-requests"),
  watchOnly: document.getElementById("watch-only"),
  banner: document.getElementById("feed-banner"),
  board: document.querySelector(".board"),
};
let chart = { symbol: localStorage.getItem("ticker.chart") || [...rows.keys()][0], points: [] };
let chain = null;

/**
 * Old prices must never look live. Two things can make them stale: the
 * connection is lost (the transport reports "reconnecting"), or the server says its
 * market feed is interrupted (a heartbeat, or a long-poll answer). Each clears
 * only on its own evidence: any message after a reconnect for the first, a
 * "live" heartbeat or a live quotes batch for the second. Meanwhile the board
 * is greyed out under a banner.
 */
const stale = { connection: false, feed: false };

function showStale() {
  const why = stale.connection ? "Connection lost, reconnecting." : stale.feed ? "Market feed interrupted." : "";
  el.banner.hidden = !why;
  el.banner.textContent = why ? `${why} Prices shown are the last received, not live.` : "";
  el.board.classList.toggle("stale", Boolean(why));
}

function setStale(part, value) {
  if (stale[part] === value) return;
  stale[part] = value;
  showStale();
}

function receive(quotes, { snapshot, measure }) {
  const now = Date.now();
  const { changed, gapped } = book.apply(quotes, { snapshot });
  for (const { quote, prev } of changed) {
    const row = rows.get(quote.symbol);
    if (!row) continue;
    renderQuote(row, quote, prev);
    const spark = sparks.get(quote.symbol);
    spark.push(quote.price);
    if (spark.length > SPARK_POINTS) spark.shift();
    drawSparkline(row.spark, spark);
    if (quote.symbol === chart.symbol) {
      chart.points.push({ price: quote.price, ts: quote.ts });
      // The chart holds as much as the server keeps: MARKET_HISTORY_STEPS.
      if (chart.points.length > config.historySteps) chart.points.shift();
      drawChart(el.chart, chart.points);
    }
    if (measure && prev) latency.add(now - quote.ts);
  }
  stats.updates += changed.length;
  // A seq gap means an update was lost on the way: ask for a fresh snapshot.
  if (gapped.length) chain.resync(gapped);
}

const handlers = {
  status: (state, detail, transport) => {
    renderBadge(el.badge, state, detail, transport);
    setStale("connection", state === "reconnecting");
  },
  // A poll or long-poll answer is a snapshot, but it is also how they deliver changes: measure it.
  snapshot: (quotes) => {
    setStale("connection", false);
    // Polling reads the database, which the market writes even while Redis is away.
    if (chain.transport === "polling") setStale("feed", false);
    receive(quotes, { snapshot: true, measure: measuresSnapshots(chain.transport) });
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
  request: () => (stats.requests += 1),
};

/** "auto" runs the chain (WebSocket, SSE, long-poll, polling); a transport name pins that one. */
function connect(choice) {
  chain?.stop();
  chain = new TransportChain(handlers, {
    symbols: watchlist.subscription(),
    pinned: TRANSPORTS.includes(choice) ? choice : null,
    transportOptions: { silenceMs: config.silenceMs },
  });
  latency.samples = [];
  chain.start();
}

function applyWatchlist() {
  for (const [symbol, row] of rows) {
    renderStar(row, watchlist.has(symbol));
    row.tr.hidden = watchlist.only && !watchlist.has(symbol);
  }
  el.watchOnly.checked = watchlist.only;
}

async function selectChart(symbol) {
  chart = { symbol, points: [] };
  localStorage.setItem("ticker.chart", symbol);
  el.chartTitle.textContent = `Chart · ${symbol}`;
  for (const [s, row] of rows) row.tr.classList.toggle("selected", s === symbol);
  drawChart(el.chart, []);
  // No limit: the server's default length is the chart's (ticker/views.py HISTORY_DEFAULT).
  const response = await fetch(`/api/quotes/${encodeURIComponent(symbol)}/history/`);
  if (!response.ok || chart.symbol !== symbol) return;
  const { points } = await response.json();
  if (chart.symbol !== symbol) return; // another symbol was picked while this one loaded
  // Live points may have arrived while the history was loading: keep the newer ones.
  const lastTs = points.at(-1)?.ts ?? 0;
  const live = chart.points.filter((p) => p.ts > lastTs);
  chart.points = points.map((p) => ({ price: p.price, ts: p.ts })).concat(live);
  drawChart(el.chart, chart.points);
}

async function loadSparklines() {
  await Promise.all(
    [...rows.keys()].map(async (symbol) => {
      const response = await fetch(`/api/quotes/${encodeURIComponent(symbol)}/history/?limit=${SPARK_POINTS}`);
      if (!response.ok) return;
      const { points } = await response.json();
      const live = sparks.get(symbol).slice(1);
      const merged = points.map((p) => p.price).concat(live).slice(-SPARK_POINTS);
      sparks.set(symbol, merged);
      drawSparkline(rows.get(symbol).spark, merged);
    }),
  );
}

document.querySelector("#quotes tbody").addEventListener("click", (event) => {
  const tr = event.target.closest("tr[data-symbol]");
  if (!tr) return;
  const symbol = tr.dataset.symbol;
  if (event.target.closest(".star")) {
    watchlist.toggle(symbol);
    applyWatchlist();
    if (watchlist.only) chain.setSymbols(watchlist.subscription());
  } else if (event.target.closest(".pick")) {
    selectChart(symbol);
  }
});

el.watchOnly.addEventListener("change", () => {
  watchlist.setOnly(el.watchOnly.checked);
  applyWatchlist();
  chain.setSymbols(watchlist.subscription());
});

for (const radio of document.querySelectorAll("input[name=transport]")) {
  radio.addEventListener("change", () => radio.checked && connect(radio.value));
}

setInterval(() => {
  const p50 = latency.percentile(50);
  el.latency.textContent = p50 === null ? "latency —" : `latency p50 ${Math.round(p50)} ms`;
  el.updates.textContent = String(stats.updates);
  el.gaps.textContent = String(book.gaps);
  el.requests.textContent = String(stats.requests);
}, 500);

const pinned = new URLSearchParams(window.location.search).get("transport");
const choice = TRANSPORTS.includes(pinned) ? pinned : "auto";
document.querySelector(`input[name=transport][value=${choice}]`).checked = true;
applyWatchlist();
connect(choice);
if (chart.symbol && rows.has(chart.symbol)) selectChart(chart.symbol);
loadSparklines();
