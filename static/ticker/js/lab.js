// The Lab: the four transports side by side on the same symbols, measured live.
import { makeTransport, measuresSnapshots } from "./chain.js";
import { readConfig } from "./config.js";
import { LatencyWindow, QuoteBook } from "./quotes.js";
import { renderBadge } from "./render.js";
import { deflatedLength, deflates, tcpIpOverhead, trafficBytes, utf8Length, wsFrameHeader } from "./wire.js";

const config = readConfig();
const cards = [...document.querySelectorAll(".lab-card")];
const symbolsInput = document.getElementById("lab-symbols");
let runs = [];

class Run {
  constructor(card, symbols) {
    this.card = card;
    this.name = card.dataset.transport;
    this.book = new QuoteBook();
    this.latency = new LatencyWindow(500);
    this.updates = 0;
    this.requests = 0;
    this.bytes = { payload: 0, overhead: 0, tcpip: 0 };
    // WebSocket frames received: as sent (compressed, ≈), inflated, and with whole quotes (no deltas).
    this.frames = { deflated: 0, uncompressed: 0, whole: 0 };
    this.negotiated = null;
    this.field = (name) => card.querySelector(`[data-field=${name}]`);
    this.field("error").hidden = true;
    this.field("error").textContent = "";
    const measure = measuresSnapshots(this.name);
    this.transport = makeTransport(
      this.name,
      {
        status: (state, detail) => renderBadge(this.field("state"), state, detail, this.name),
        // The server's word on a refused request or message (an unknown symbol, a bad parameter):
        // shown as it said it. The HTTP transports stop retrying a refused request (transport.js).
        error: (frame) => {
          const error = this.field("error");
          error.hidden = false;
          error.textContent = `${frame.code}: ${frame.message}`;
        },
        snapshot: (quotes) => this.take(quotes, { snapshot: true, measure }),
        quotes: (quotes) => this.take(quotes, { snapshot: false, measure: true }),
        request: () => (this.requests += 1),
        traffic: (record) => this.count(record),
      },
      { symbols, silenceMs: config.silenceMs },
    );
    this.transport.start();
  }

  /** What one message cost, by layer: payload, protocol headers, TCP/IP headers (per message, at least one segment). */
  count(record) {
    if (record.kind === "websocket" && record.direction === "in") return this.countFrame(record);
    for (const { payload, overhead } of trafficBytes(record)) this.add(payload, overhead);
  }

  add(payload, overhead) {
    this.bytes.payload += payload;
    this.bytes.overhead += overhead;
    this.bytes.tcpip += tcpIpOverhead(payload + overhead);
  }

  /** A frame received: its payload as it crossed the wire, compressed when permessage-deflate was negotiated. */
  async countFrame(record) {
    this.negotiated = `${record.protocol || "no subprotocol"}; ${record.extensions || "no compression"}`;
    const inflated = utf8Length(record.text);
    this.frames.uncompressed += inflated;
    this.frames.whole += record.whole ? utf8Length(record.whole) : inflated;
    let sent = inflated;
    if (deflates(record.extensions) && inflated >= config.compressMinBytes) {
      sent = Math.min(inflated, await deflatedLength(record.text)); // the server sends the smaller
    }
    this.frames.deflated += sent;
    this.add(sent, wsFrameHeader(sent));
  }

  take(quotes, { snapshot, measure }) {
    const now = Date.now();
    const { changed } = this.book.apply(quotes, { snapshot });
    for (const { quote, prev } of changed) {
      if (!prev) continue; // the first sight of a symbol is state, not an update
      this.updates += 1;
      if (measure) this.latency.add(now - quote.ts);
    }
  }

  render() {
    const per = (n) => (this.updates ? (n / this.updates).toFixed(1) : "—");
    const p50 = this.latency.percentile(50);
    const p95 = this.latency.percentile(95);
    this.field("updates").textContent = String(this.updates);
    this.field("latency").textContent = p50 === null ? "—" : `${Math.round(p50)} / ${Math.round(p95)} ms`;
    this.field("requests").textContent = String(this.requests);
    const total = this.bytes.payload + this.bytes.overhead + this.bytes.tcpip;
    this.field("bytes").textContent = per(total);
    this.field("payload").textContent = per(this.bytes.payload);
    this.field("overhead").textContent = per(this.bytes.overhead);
    this.field("tcpip").textContent = per(this.bytes.tcpip);
    drawLayers(this.card.querySelector(".layers"), this.bytes, total);
    if (this.name === "websocket") {
      this.field("negotiated").textContent = this.negotiated ?? "—";
      for (const name of ["deflated", "uncompressed", "whole"]) this.field(name).textContent = per(this.frames[name]);
      drawPayloads(this.card.querySelector(".payloads"), this.frames);
    }
  }

  stop() {
    this.transport.stop();
  }
}

// The bars' colours, one place for the canvases and their legends (.swatch[data-key]).
const COLOURS = {
  payload: "#1e8449",
  overhead: "#b9770e",
  tcpip: "#999",
  deflated: "#1e8449",
  uncompressed: "#2e6da4",
  whole: "#7d3c98",
};

/** One stacked bar: the encapsulation picture, measured (payload, protocol headers, TCP/IP headers). */
function drawLayers(canvas, bytes, total) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!total) return;
  let x = 0;
  for (const key of ["payload", "overhead", "tcpip"]) {
    const width = (bytes[key] / total) * canvas.width;
    ctx.fillStyle = COLOURS[key];
    ctx.fillRect(x, 0, width, canvas.height);
    x += width;
  }
}

/** Three bars, one a line, to the scale of the longest: the WebSocket's payload compressed, uncompressed, whole. */
function drawPayloads(canvas, frames) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const keys = ["deflated", "uncompressed", "whole"];
  const most = Math.max(...keys.map((key) => frames[key]));
  if (!most) return;
  const height = canvas.height / keys.length;
  keys.forEach((key, i) => {
    ctx.fillStyle = COLOURS[key];
    ctx.fillRect(0, i * height + 1, (frames[key] / most) * canvas.width, height - 2);
  });
}

for (const swatch of document.querySelectorAll(".swatch[data-key]")) {
  swatch.style.backgroundColor = COLOURS[swatch.dataset.key];
}

function start() {
  runs.forEach((run) => run.stop());
  const raw = symbolsInput.value.trim();
  const symbols = !raw || raw === "*" ? ["*"] : raw.split(",").map((s) => s.trim().toUpperCase()).filter(Boolean);
  runs = cards.map((card) => new Run(card, symbols));
}

async function showHandshake() {
  const response = await fetch("/api/lab/handshake/");
  const data = await response.json();
  if (!response.ok) {
    document.getElementById("hs-request").textContent = data.message;
    return;
  }
  showHead(document.getElementById("hs-request"), data.request, "offered");
  showHead(document.getElementById("hs-response"), data.response, "negotiated");
  const { protocol, extensions } = data.negotiated ?? {};
  document.getElementById("hs-negotiated").textContent =
    `Negotiated: subprotocol ${protocol ?? "none (whole quotes)"}; extension ${extensions ?? "none (uncompressed)"}.`;
  document.getElementById("hs-request-bytes").textContent = String(data.request_bytes);
  document.getElementById("hs-response-bytes").textContent = String(data.response_bytes);
  document.getElementById("hs-accept").textContent = data.accept_ok
    ? `Sec-WebSocket-Accept checks out: base64(SHA-1(key + RFC 6455 GUID)) = ${data.accept_expected}`
    : "The server's Sec-WebSocket-Accept did not match the key.";
  // Asked on that very socket ({"action": "whoami"}): the user its session named, or nobody.
  document.getElementById("hs-user-seen").textContent =
    `The server saw user: ${data.user ?? "anonymous"}${data.cookie_sent ? "" : " (no cookie sent)"}.`;
}

// The handshake headers that choose a subprotocol and an extension (RFC 6455 sections 4.2.2 and 9.1).
const NEGOTIATING = {
  "sec-websocket-protocol": "subprotocol",
  "sec-websocket-extensions": "extension",
};

/**
 * An HTTP head as it crossed the wire, line by line; the subprotocol and extension lines are marked and
 * labelled ("offered" in the request, "negotiated" in the 101 answer). Text only, through textContent.
 */
function showHead(pre, head, verb) {
  pre.replaceChildren();
  for (const line of head.replace(/(\r\n)+$/, "").split("\r\n")) {
    const what = NEGOTIATING[line.split(":")[0].trim().toLowerCase()];
    if (what) {
      const mark = document.createElement("mark");
      mark.className = "negotiation";
      mark.dataset.header = what;
      mark.textContent = line;
      const label = document.createElement("span");
      label.className = "negotiation-label";
      label.textContent = `  ← ${what} ${verb}`;
      pre.append(mark, label, "\n");
    } else {
      pre.append(`${line}\n`);
    }
  }
}

document.getElementById("lab-form").addEventListener("submit", (event) => {
  event.preventDefault();
  start();
});
setInterval(() => runs.forEach((run) => run.render()), 500);
start();
showHandshake();
