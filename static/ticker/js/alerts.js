// The signed-in user's price alerts on the market screen (issue 23): a toast and the unread badge when one
// fires (an `alert` frame on the WebSocket or SSE), the list (GET /api/alerts/ on load; opening it marks
// them read), a form to set one, delete and re-arm buttons, and the browser's notifications when the user
// asks for them (never unprompted). On long-polling and polling nothing is pushed: the list is fetched
// again every PULL_EVERY_MS instead. A frame missed while the connection was held back (or away) shows up
// when the list is fetched again after the next snapshot (docs/protocol.md, "Personal frames").
import { formatPrice, formatSigned } from "./quotes.js";

export const CONDITIONS = {
  price_above: "price above",
  price_below: "price below",
  change_pct_above: "change above",
  change_pct_below: "change below",
};
export const PULL_TRANSPORTS = ["longpoll", "polling"];
export const PULL_EVERY_MS = 15000;
// A snapshot (a reconnect, or a connection that was held back) fetches the list again, at most this often.
const RELOAD_AFTER_SNAPSHOT_MS = 10000;
const TOAST_MS = 8000;

const isPct = (condition) => condition.startsWith("change_pct");

/** One line for an alert: "AAPL price above 190.00: now 190.12" ("now" only once it fired). */
export function describeAlert(alert) {
  const pct = isPct(alert.condition);
  const value = Number(alert.value);
  const threshold = Number.isFinite(value) ? (pct ? formatSigned(value, "%") : formatPrice(value)) : alert.value;
  let text = `${alert.symbol} ${CONDITIONS[alert.condition] ?? alert.condition} ${threshold}`;
  const now = pct ? alert.change_pct : alert.price;
  if (typeof now === "number") text += `: now ${pct ? formatSigned(now, "%") : formatPrice(now)}`;
  return text;
}

/** The value of the `csrftoken` cookie (Django's CSRF_COOKIE_NAME), for the X-CSRFToken header. */
export function csrfToken(cookies = document.cookie) {
  for (const part of cookies.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(rest.join("="));
  }
  return "";
}

/** The list's bookkeeping, without the DOM: the alerts newest first, and how many fired unread. */
export class AlertBook {
  constructor() {
    this.alerts = [];
    this.unread = 0;
  }

  load({ alerts = [], unread = 0 } = {}) {
    this.alerts = [...alerts];
    this.unread = unread;
  }

  /** An `alert` frame: the alert as it fired. True if it is news (not a fire this book already holds). */
  fired(alert) {
    const held = this.alerts.find((a) => a.id === alert.id);
    const news = !(held && held.state === "triggered" && held.step === alert.step);
    this.put(alert);
    if (news && !alert.read) this.unread += 1;
    return news;
  }

  /** An alert created or re-armed: in the list, newest first by id. */
  put(alert) {
    this.alerts = [alert, ...this.alerts.filter((a) => a.id !== alert.id)].sort((a, b) => b.id - a.id);
  }

  remove(id) {
    const gone = this.alerts.find((a) => a.id === id);
    this.alerts = this.alerts.filter((a) => a.id !== id);
    if (gone && gone.state === "triggered" && !gone.read) this.unread = Math.max(0, this.unread - 1);
  }

  markRead() {
    this.alerts = this.alerts.map((a) => (a.state === "triggered" ? { ...a, read: true } : a));
    this.unread = 0;
  }
}

/** The alerts UI in `root` (templates/ticker/_alerts.html); returns what main.js calls. */
export function mountAlerts(root, { fetchFn = (...args) => fetch(...args), notifier = globalThis.Notification } = {}) {
  const $ = (id) => root.querySelector(`#${id}`);
  const el = {
    toggle: $("alerts-toggle"),
    unread: $("alerts-unread"),
    panel: $("alerts-panel"),
    list: $("alert-list"),
    empty: $("alerts-empty"),
    form: $("alert-form"),
    error: $("alert-error"),
    notify: $("alerts-notify"),
    notifyState: $("alerts-notify-state"),
    toasts: document.getElementById("toasts"),
  };
  const book = new AlertBook();
  let loadedAt = 0;
  let pullTimer = null;
  let signedIn = true;

  async function call(path, method = "GET", body = undefined) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetchFn(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new Error(data?.message || data?.code || `${method} ${path}: HTTP ${response.status}`);
    return data;
  }

  async function load() {
    if (!signedIn) return;
    loadedAt = Date.now();
    try {
      book.load(await call("/api/alerts/"));
      render();
    } catch (error) {
      console.warn("ticker: could not load alerts", error);
    }
  }

  function render() {
    el.unread.textContent = String(book.unread);
    el.unread.hidden = book.unread === 0;
    el.toggle.setAttribute("aria-label", `Alerts, ${book.unread} unread`);
    el.list.replaceChildren(...book.alerts.map(item));
    el.empty.hidden = book.alerts.length > 0;
  }

  function item(alert) {
    const li = document.createElement("li");
    li.dataset.id = String(alert.id);
    li.className = `alert-item alert-${alert.state}${alert.read ? "" : " unread"}`;
    const text = document.createElement("span");
    text.className = "alert-text";
    text.textContent = describeAlert(alert);
    const state = document.createElement("span");
    state.className = "alert-state";
    state.textContent =
      alert.state === "triggered" && alert.triggered_at
        ? `triggered ${new Date(alert.triggered_at).toLocaleTimeString()}`
        : alert.state;
    li.append(text, state);
    if (alert.note) {
      const note = document.createElement("span");
      note.className = "alert-note";
      note.textContent = alert.note;
      li.append(note);
    }
    if (alert.state === "triggered") li.append(button("rearm", "Re-arm", alert));
    li.append(button("delete", "Delete", alert));
    return li;
  }

  function button(action, label, alert) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.action = action;
    b.textContent = label;
    b.setAttribute("aria-label", `${label} ${describeAlert(alert)}`);
    return b;
  }

  function toast(alert) {
    const div = document.createElement("div");
    div.className = "toast";
    div.setAttribute("role", "status");
    const title = document.createElement("strong");
    title.textContent = describeAlert(alert);
    div.append(title);
    if (alert.note) {
      const note = document.createElement("span");
      note.textContent = alert.note;
      div.append(note);
    }
    const close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.textContent = "×";
    close.setAttribute("aria-label", "Dismiss");
    close.addEventListener("click", () => div.remove());
    div.append(close);
    el.toasts.append(div);
    setTimeout(() => div.remove(), TOAST_MS);
  }

  async function markRead() {
    if (book.unread === 0) return;
    try {
      await call("/api/alerts/read/", "POST", {});
      book.markRead();
      render();
    } catch (error) {
      console.warn("ticker: could not mark alerts read", error);
    }
  }

  function showNotify() {
    const state = notifier ? notifier.permission : "unsupported";
    el.notify.hidden = state !== "default";
    el.notifyState.textContent =
      state === "granted"
        ? "Browser notifications are on."
        : state === "denied"
          ? "Browser notifications are blocked for this site."
          : "";
  }

  el.toggle.addEventListener("click", () => {
    const open = el.panel.hidden;
    el.panel.hidden = !open;
    el.toggle.setAttribute("aria-expanded", String(open));
    if (open) markRead();
  });

  el.notify.addEventListener("click", async () => {
    if (notifier) await notifier.requestPermission();
    showNotify();
  });

  el.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(el.form);
    el.error.textContent = "";
    try {
      const alert = await call("/api/alerts/", "POST", {
        symbol: String(data.get("symbol") ?? "")
          .trim()
          .toUpperCase(),
        condition: data.get("condition"),
        value: String(data.get("value") ?? "").trim(),
        note: String(data.get("note") ?? ""),
      });
      book.put(alert);
      render();
      el.form.reset();
    } catch (error) {
      el.error.textContent = error.message;
    }
  });

  el.list.addEventListener("click", async (event) => {
    const b = event.target.closest("button[data-action]");
    if (!b) return;
    const id = Number(b.closest("li").dataset.id);
    el.error.textContent = "";
    try {
      if (b.dataset.action === "delete") {
        await call(`/api/alerts/${id}/`, "DELETE");
        book.remove(id);
      } else {
        const alert = await call(`/api/alerts/${id}/rearm/`, "POST", {});
        if (alert?.id === id) book.put(alert);
        else await load();
      }
      render();
    } catch (error) {
      el.error.textContent = error.message;
    }
  });

  showNotify();
  load();

  return {
    book,
    /** An `alert` frame from the feed. */
    fired(alert) {
      if (!signedIn || !book.fired(alert)) return;
      render();
      toast(alert);
      if (notifier?.permission === "granted") new notifier(describeAlert(alert), { body: alert.note || "" });
      if (!el.panel.hidden) markRead();
    },
    /** The transport in use: on a pull transport nothing is pushed, so the list is fetched every PULL_EVERY_MS. */
    transport(name) {
      const pull = PULL_TRANSPORTS.includes(name);
      if (pull && pullTimer === null) pullTimer = setInterval(load, PULL_EVERY_MS);
      if (!pull && pullTimer !== null) {
        clearInterval(pullTimer);
        pullTimer = null;
      }
    },
    /** A snapshot arrived (a reconnect, or a held-back connection caught up): a missed alert is fetched. */
    snapshot(transportName) {
      if (PULL_TRANSPORTS.includes(transportName)) return; // their answers are all snapshots: the timer reloads
      if (Date.now() - loadedAt >= RELOAD_AFTER_SNAPSHOT_MS) load();
    },
    /** Signed out (in this tab or another): nothing personal any more. */
    signedOut() {
      signedIn = false;
      this.transport(null);
      root.hidden = true;
    },
  };
}

/**
 * A personal frame from the feed (transport.js's `personal` handler) to the page: `alert` to the alerts UI
 * (null when nobody is signed in), `watchlist` to the watchlist as the DOM event `ticker:watchlist`
 * ({detail: {symbols}}, which the watchlist's owner applies), `signed_out` to both (`ticker:signed_out`).
 */
export function onPersonalFrame(frame, alerts, target = document) {
  if (frame.type === "alert") alerts?.fired(frame.alert);
  else if (frame.type === "watchlist") {
    target.dispatchEvent(new CustomEvent("ticker:watchlist", { detail: { symbols: frame.symbols } }));
  } else if (frame.type === "signed_out") {
    alerts?.signedOut();
    target.dispatchEvent(new CustomEvent("ticker:signed_out"));
  }
}
