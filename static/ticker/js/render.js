// DOM updates for the quotes table. Data only ever goes in through textContent.
import { direction, formatPrice, formatSigned } from "./quotes.js";

const FLASH_MS = 700;

export function indexRows(tbody) {
  const rows = new Map();
  for (const tr of tbody.querySelectorAll("tr[data-symbol]")) {
    rows.set(tr.dataset.symbol, {
      tr,
      price: tr.querySelector(".price"),
      change: tr.querySelector(".change"),
      changePct: tr.querySelector(".change-pct"),
      haltTag: tr.querySelector(".halt-tag"),
      spark: tr.querySelector(".spark"),
      star: tr.querySelector(".star"),
    });
  }
  return rows;
}

function setSign(el, value) {
  el.classList.toggle("up", value > 0);
  el.classList.toggle("down", value < 0);
}

export function renderQuote(row, quote, prev) {
  row.price.textContent = formatPrice(quote.price);
  row.change.textContent = formatSigned(quote.change);
  row.changePct.textContent = formatSigned(quote.change_pct, "%");
  setSign(row.change, quote.change);
  setSign(row.changePct, quote.change);
  row.tr.classList.toggle("halted", quote.halted);
  row.haltTag.textContent = quote.halted ? "HALTED" : "";
  row.tr.dataset.seq = String(quote.seq);
  const dir = direction(quote, prev);
  if (dir) {
    const cls = dir > 0 ? "flash-up" : "flash-down";
    row.price.classList.remove("flash-up", "flash-down");
    // Reading offsetWidth restarts the CSS animation when a cell flashes twice in a row.
    void row.price.offsetWidth;
    row.price.classList.add(cls);
    clearTimeout(row.flashTimer);
    row.flashTimer = setTimeout(() => row.price.classList.remove(cls), FLASH_MS);
  }
}

/** A transport's status: state is "connecting", "live", "polling" or "reconnecting" (transport.js). */
export function renderBadge(el, state, detail, transport = "") {
  el.className = `badge badge-${state}`;
  el.dataset.state = state;
  el.dataset.transport = transport;
  el.textContent = `${state} · ${detail}`;
}

export function renderStar(row, watched) {
  row.star.textContent = watched ? "★" : "☆";
  row.star.setAttribute("aria-pressed", String(watched));
  row.star.title = watched ? "Remove from watchlist" : "Add to watchlist";
}
