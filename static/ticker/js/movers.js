// The whole market's top gainers and losers (movers frames: docs/protocol.md, "Movers").
import { arrow, formatPrice, formatSigned, trend } from "./quotes.js";

/** One list (gainers or losers): its items are kept and rewritten, so keyboard focus survives an update. */
function renderList(ol, quotes) {
  while (ol.children.length > quotes.length) ol.lastElementChild.remove();
  quotes.forEach((quote, i) => {
    let li = ol.children[i];
    if (!li) {
      li = document.createElement("li");
      const pick = document.createElement("button");
      pick.type = "button";
      pick.className = "pick";
      const price = document.createElement("span");
      price.className = "num price";
      const pct = document.createElement("span");
      pct.className = "num change-pct";
      const tag = document.createElement("span");
      tag.className = "halt-tag";
      li.append(pick, tag, price, pct);
      ol.append(li);
    }
    const [pick, tag, price, pct] = li.children;
    li.dataset.symbol = quote.symbol;
    pick.textContent = quote.symbol;
    pick.setAttribute("aria-label", `Chart ${quote.symbol}`);
    tag.textContent = quote.halted ? "HALTED" : "";
    price.textContent = formatPrice(quote.price);
    pct.textContent = `${arrow(quote.change)} ${formatSigned(quote.change_pct, "%")}`.trim();
    pct.className = `num change-pct ${trend(quote.change)}`;
  });
}

export function renderMovers(panel, frame) {
  renderList(panel.querySelector("#gainers"), frame.gainers ?? []);
  renderList(panel.querySelector("#losers"), frame.losers ?? []);
  panel.dataset.step = String(frame.step ?? "");
  const listed = panel.querySelector("#movers-listed");
  listed.textContent = typeof frame.listed === "number" ? `of ${frame.listed.toLocaleString("en-US")} listed` : "";
}
