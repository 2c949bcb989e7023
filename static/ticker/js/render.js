// DOM updates for the screen's table and badges. Data only ever goes in through textContent.
import { arrow, formatField, formatPrice, formatSigned, formatVolume, trend } from "./quotes.js";

/** A row's cells, found once. */
export function indexRow(tr) {
  const cell = (name) => tr.querySelector(`.${name}`);
  return {
    tr,
    symbol: tr.dataset.symbol,
    pick: cell("pick"),
    name: cell("name"),
    price: cell("price"),
    change: cell("change"),
    changePct: cell("change-pct"),
    arrow: tr.querySelector(".change-pct .arrow"),
    pctValue: tr.querySelector(".change-pct .value"),
    open: cell("open"),
    high: cell("high"),
    low: cell("low"),
    volume: cell("volume"),
    haltTag: cell("halt-tag"),
    spark: cell("spark"),
    remove: cell("remove"),
  };
}

export function indexRows(tbody) {
  const rows = new Map();
  for (const tr of tbody.querySelectorAll("tr[data-symbol]")) rows.set(tr.dataset.symbol, indexRow(tr));
  return rows;
}

/** A new, empty row for `symbol`, cloned from the page's row template (the server's own markup). */
export function makeRow(template, symbol, name) {
  const tr = template.content.firstElementChild.cloneNode(true);
  tr.dataset.symbol = symbol;
  const row = indexRow(tr);
  row.pick.textContent = symbol;
  row.pick.setAttribute("aria-label", `Chart ${symbol}`);
  row.remove.setAttribute("aria-label", `Remove ${symbol} from the watchlist`);
  row.name.textContent = name;
  return row;
}

function setTrend(el, value) {
  el.classList.toggle("up", value === "up");
  el.classList.toggle("down", value === "down");
}

// A price cell's short highlight on a tick (CSS animations of the same name). Each direction has two
// names with the same keyframes: switching between them restarts the animation without a forced reflow.
export const FLASHES = ["flash-up", "flash-down"];

/**
 * Highlights a cell for 400 ms in the tick's direction ("up" or "down"), as Lightstreamer's StockList does.
 * A cell whose highlight is still running is left as it is (main.js takes the class off at animationend), so
 * at four steps a second a cell flashes at most about twice a second: WCAG 2.3.1 allows no more than three
 * flashes in any second, and restarting the highlight on every tick would flash four times.
 */
export function flashCell(el, tick) {
  if (FLASHES.some((name) => el.classList.contains(name))) return;
  el.classList.add(`flash-${tick}`);
}

/**
 * Writes a quote into its row. Colour and arrow follow the change against the
 * previous close (as the sparkline's colour does); the price cell also says in
 * which direction the last tick went (data-tick, an arrow and a colour in CSS),
 * which stays until the next tick, and with `flash` it is highlighted for a
 * moment (never under prefers-reduced-motion or while paused: the caller decides).
 * `prev` is the quote the row showed before.
 */
export function renderQuote(row, quote, prev, { flash = false } = {}) {
  const t = trend(quote.change);
  row.price.textContent = formatPrice(quote.price);
  row.change.textContent = formatSigned(quote.change);
  row.arrow.textContent = arrow(quote.change);
  row.pctValue.textContent = formatSigned(quote.change_pct, "%");
  setTrend(row.change, t);
  setTrend(row.changePct, t);
  row.open.textContent = formatField(quote, "open");
  row.high.textContent = formatField(quote, "high");
  row.low.textContent = formatField(quote, "low");
  row.volume.textContent = formatVolume(quote.volume);
  row.tr.classList.toggle("halted", quote.halted);
  row.haltTag.textContent = quote.halted ? "HALTED" : "";
  row.tr.dataset.seq = String(quote.seq);
  row.tr.dataset.changePct = String(quote.change_pct);
  if (prev && quote.price !== prev.price) {
    const tick = quote.price > prev.price ? "up" : "down";
    row.price.dataset.tick = tick;
    if (flash) flashCell(row.price, tick);
  }
}

/**
 * Puts `parent`'s children in the order of `nodes` (nodes not yet in `parent` are inserted) and
 * moves nothing when the order already holds; returns whether anything moved. The node holding the
 * keyboard focus (`keep`) never moves: the others are placed around it. Taken out and put back
 * (insertBefore) it would lose the focus, and even moved keeping it (Element.moveBefore) the browser
 * scrolls the page to follow it. Others move with moveBefore where there is one, which keeps their
 * state (a running flash), else with insertBefore.
 */
export function arrange(parent, nodes, keep = null) {
  const current = parent.children;
  if (current.length === nodes.length && nodes.every((node, i) => current[i] === node)) return false;
  const place = (node, ref) => {
    if (node.parentNode === parent && typeof parent.moveBefore === "function") parent.moveBefore(node, ref);
    else parent.insertBefore(node, ref);
  };
  const pivot = keep && nodes.includes(keep) && keep.parentNode === parent ? keep : null;
  if (!pivot) {
    nodes.forEach((node, i) => {
      const ref = parent.children[i] ?? null;
      if (ref !== node) place(node, ref);
    });
    return true;
  }
  const k = nodes.indexOf(pivot);
  for (let i = k - 1; i >= 0; i--) {
    const ref = nodes[i + 1];
    if (nodes[i].nextSibling !== ref) place(nodes[i], ref);
  }
  for (let i = k + 1; i < nodes.length; i++) {
    const ref = nodes[i - 1].nextSibling;
    if (ref !== nodes[i]) place(nodes[i], ref);
  }
  return true;
}

/**
 * A transport's status: state is "connecting", "live", "polling", "reconnecting", "busy"
 * (the server is full: waiting to retry) or "error" (transport.js), or "interrupted" while the server says its market feed is:
 * the badge never says "live" over prices that are not.
 */
export function renderBadge(el, state, detail, transport = "") {
  el.className = `badge badge-${state}`;
  el.dataset.state = state;
  el.dataset.transport = transport;
  el.textContent = `${state} · ${detail}`;
}
