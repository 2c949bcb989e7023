// The admin's operations view (/admin/ops/): polls its JSON (staff with ticker.view_operations only) every
// second and renders it with textContent (never innerHTML). Figures: ticker/ops/registry.py; what they mean: docs/operations.md.

const POLL_MS = 1000;

export function duration(seconds) {
  if (seconds == null) return "–";
  const s = Math.floor(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function bytes(n) {
  if (n == null) return "–";
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function ms(value) {
  return value == null ? "–" : `${value.toFixed(value < 10 ? 2 : 1)} ms`;
}

export function ago(then, now) {
  return then == null ? "never" : `${Math.max(0, now - then).toFixed(1)} s ago`;
}

const num = (value) => (value == null ? "–" : String(value));

export function webRow(p) {
  const c = p.connections || {};
  const s = p.subscriptions || {};
  return [
    [p.host], [p.pid, "num"], [duration(p.uptime_s), "num"], [p.feed ?? "not started", p.feed === "live" ? "" : "bad"],
    [num(p.step), "num"], [num(c.websocket), "num", "websocket"], [num(c.sse), "num", "sse"],
    [num(c.long_poll), "num", "long_poll"], [`${num(s.all)} / ${num(s.watchlist)}`, "num", "subscriptions"],
    [num(p.frames_per_s), "num", "frames_per_s"], [ms(p.fanout_p99_ms), "num"],
    [`${num(p.slow_clients)} (${num(p.held_back_total)} / ${num(p.resnapshotted_total)})`, "num", "slow"],
    [bytes(p.memory_bytes), "num"],
  ];
}

export function marketRow(p, now) {
  return [
    [p.host], [p.pid, "num"], [duration(p.uptime_s), "num"], [num(p.step), "num", "step"], [ms(p.step_ms), "num"],
    [ago(p.last_publish, now), "num"], [num(p.publish_failures), p.publish_failures ? "num bad" : "num"],
    [num(p.symbols), "num", "symbols"],
    [num(p.alerts_armed), "num", "alerts_armed"], [num(p.alerts_fired), "num", "alerts_fired"],
    [ms(p.alert_evaluation_ms), "num"],
    [num(p.alert_delivery_failures), p.alert_delivery_failures ? "num bad" : "num"],
    [bytes(p.memory_bytes), "num"],
  ];
}

export function storeRows(view) {
  const rows = [];
  const r = view.redis;
  if (r) {
    const details = r.ok
      ? `Redis ${r.version}, ${bytes(r.used_memory_bytes)} used, ${r.connected_clients} clients, up ${duration(r.uptime_s)}`
      : r.error;
    rows.push([["Redis"], [r.ok ? "up" : "DOWN", r.ok ? "" : "bad"], [ms(r.ping_ms), "num"], [details]]);
  }
  const d = view.database;
  if (d) {
    rows.push([["Database"], [d.ok ? "up" : "DOWN", d.ok ? "" : "bad"], [ms(d.ping_ms), "num"], [d.ok ? d.vendor : d.error]]);
  }
  return rows;
}

function fill(tbody, rows, keys) {
  const cells = rows.map((row, i) => {
    const tr = document.createElement("tr");
    if (keys) tr.dataset.process = keys[i];
    for (const [text, cls, field] of row) {
      const td = document.createElement("td");
      td.textContent = String(text);
      for (const name of (cls || "").split(" ").filter(Boolean)) td.classList.add(name === "bad" ? "ops-bad" : name);
      if (field) td.dataset.field = field;
      tr.append(td);
    }
    return tr;
  });
  tbody.replaceChildren(...cells);
}

function render(view) {
  const key = (p) => `${p.host}:${p.pid}`;
  fill(document.querySelector("#ops-web tbody"), view.web.map(webRow), view.web.map(key));
  fill(document.querySelector("#ops-market tbody"), view.market.map((p) => marketRow(p, view.now)), view.market.map(key));
  fill(document.querySelector("#ops-stores tbody"), storeRows(view));
}

async function poll(url, status) {
  try {
    const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    const view = await response.json();
    render(view);
    status.textContent = `${view.web.length} web process(es), ${view.market.length} market process(es); updated ${new Date(view.now * 1000).toLocaleTimeString()}`;
    status.classList.remove("error");
  } catch (error) {
    status.textContent = `Could not update: ${error.message}. Retrying every second.`;
    status.classList.add("error");
  }
}

const main = typeof document === "undefined" ? null : document.querySelector("[data-ops-url]");
if (main) {
  const status = document.getElementById("ops-status");
  const tick = async () => {
    await poll(main.dataset.opsUrl, status);
    setTimeout(tick, POLL_MS);
  };
  tick();
}
