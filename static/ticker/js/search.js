// Search every listed symbol by symbol or name (GET /api/symbols/?q=), as an ARIA combobox:
// type, ArrowDown/ArrowUp to choose, Enter to take it, Escape to close.

const DEBOUNCE_MS = 120;
const LIMIT = 12;

export class SymbolSearch {
  /** onChoose({symbol, name}) is called with the result taken; has(symbol) says whether it is on the watchlist. */
  constructor(input, listbox, { onChoose, has }) {
    this.input = input;
    this.listbox = listbox;
    this.onChoose = onChoose;
    this.has = has;
    this.results = [];
    this.active = -1;
    this.timer = null;
    this.asked = 0; // answers to older questions are dropped
    input.addEventListener("input", () => this.typed());
    input.addEventListener("keydown", (event) => this.key(event));
    input.addEventListener("blur", () => setTimeout(() => this.close(), 150));
    // Keep the focus in the input while an option is clicked.
    listbox.addEventListener("mousedown", (event) => event.preventDefault());
    listbox.addEventListener("click", (event) => {
      const option = event.target.closest("[role=option]");
      if (option) this.choose(Number(option.dataset.index));
    });
  }

  typed() {
    clearTimeout(this.timer);
    const q = this.input.value.trim();
    if (!q) return this.close();
    this.timer = setTimeout(() => this.ask(q), DEBOUNCE_MS);
  }

  /** Searches for `q`; with `take`, the first result is taken at once (Enter typed before the answer came). */
  async ask(q, { take = false } = {}) {
    const asked = ++this.asked;
    let results = [];
    let message = "";
    try {
      const response = await fetch(`/api/symbols/?q=${encodeURIComponent(q)}&limit=${LIMIT}`);
      const body = await response.json();
      if (response.ok) results = body.results;
      else message = body.message ?? `Search failed (HTTP ${response.status}).`;
    } catch {
      message = "Search failed: no connection.";
    }
    if (asked !== this.asked || this.input.value.trim() !== q) return;
    if (take && results.length) return this.take(results[0]);
    this.show(results, message || (results.length ? "" : `No listed symbol matches “${q}”.`));
  }

  show(results, message) {
    this.results = results;
    this.active = results.length ? 0 : -1;
    this.listbox.replaceChildren();
    results.forEach((result, index) => {
      const li = document.createElement("li");
      li.id = `search-option-${index}`;
      li.setAttribute("role", "option");
      li.dataset.index = String(index);
      li.dataset.symbol = result.symbol;
      const symbol = document.createElement("strong");
      symbol.textContent = result.symbol;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = result.name;
      const sector = document.createElement("span");
      sector.className = "sector";
      sector.textContent = result.sector ?? "";
      const state = document.createElement("span");
      state.className = "state";
      state.textContent = this.has(result.symbol) ? "✓ watching" : "+ add";
      li.append(symbol, name, sector, state);
      this.listbox.append(li);
    });
    if (message) {
      const li = document.createElement("li");
      li.className = "search-message";
      li.setAttribute("role", "presentation");
      li.textContent = message;
      this.listbox.append(li);
    }
    this.listbox.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    this.highlight();
  }

  highlight() {
    for (const li of this.listbox.querySelectorAll("[role=option]")) {
      const on = Number(li.dataset.index) === this.active;
      li.setAttribute("aria-selected", String(on));
      if (on) li.scrollIntoView({ block: "nearest" });
    }
    if (this.active >= 0) this.input.setAttribute("aria-activedescendant", `search-option-${this.active}`);
    else this.input.removeAttribute("aria-activedescendant");
  }

  key(event) {
    const open = !this.listbox.hidden;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (!open) return this.typed();
      if (!this.results.length) return;
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.active = (this.active + step + this.results.length) % this.results.length;
      this.highlight();
    } else if (event.key === "Enter") {
      event.preventDefault();
      const q = this.input.value.trim();
      if (open && this.active >= 0) this.choose(this.active);
      else if (q) {
        clearTimeout(this.timer);
        this.ask(q, { take: true });
      }
    } else if (event.key === "Escape") {
      if (open) this.close();
      else this.input.value = "";
    }
  }

  choose(index) {
    const result = this.results[index];
    if (result) this.take(result);
  }

  take(result) {
    this.input.value = "";
    this.close();
    this.onChoose(result);
  }

  close() {
    clearTimeout(this.timer);
    this.asked += 1;
    this.listbox.hidden = true;
    this.listbox.replaceChildren();
    this.results = [];
    this.active = -1;
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }
}
