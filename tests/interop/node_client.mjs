// An independent WebSocket client of /ws/quotes/ on Node's `ws` (package.json, devDependencies), for
// tests/test_independent_clients.py. It shares no code with the server, the dashboard or the Python client.
//
//   node tests/interop/node_client.mjs --url ws://127.0.0.1:PORT/ws/quotes/ --origin http://127.0.0.1:PORT \
//        [--seconds 180] [--history 40]
//
// It offers permessage-deflate and asks for the delta format (subprotocol ticker.v2.json), subscribes to
// every symbol, and decodes every frame into a book of whole quotes: deltas merged onto the quote held at
// seq - 1, seq continuity checked, change and change_pct derived in integer cents and checked against every
// whole quote. Prints one JSON line {"event": "ready", ...} once the first snapshot is in, and one JSON line
// {"event": "summary", ...} once it holds the seqs a stdin line {"stop_at": {SYMBOL: seq, ...}} names (the
// test's way to stop it when the market has stopped), when stdin closes, on SIGTERM/SIGINT, or after
// --seconds at most. Exit status 0 once the summary is printed, whatever it found: the test judges it.

import { createRequire } from "node:module";
import process from "node:process";
import readline from "node:readline";
import WebSocket from "ws";

const WS_VERSION = createRequire(import.meta.url)("ws/package.json").version;
const SUBPROTOCOL = "ticker.v2.json";
const FIELDS = [
  "symbol", "price", "prev_close", "change", "change_pct", "open", "high", "low", "volume", "seq", "ts", "halted",
];
const DERIVED = new Set(["change", "change_pct"]);
const MONEY = ["price", "prev_close", "open", "high", "low"];
const MAX_ERRORS = 50; // kept in the summary (all are counted)

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  if (at === -1) {
    if (fallback === undefined) throw new Error(`--${name} is required`);
    return fallback;
  }
  return process.argv[at + 1];
}

const url = option("url");
const origin = option("origin");
const maxSeconds = Number(option("seconds", "180"));
const historyLength = Number(option("history", "40"));

const stats = {
  frames: 0, // every message received, whatever its type
  frameTypes: {},
  quotes: 0, // quotes applied from quotes frames (whole or delta)
  snapshotQuotes: 0,
  deltas: 0,
  wholeInQuotes: 0,
  redundantFields: 0, // fields a delta carried with the value already held (allowed, but not "changed")
  gaps: [],
  errors: [],
  errorCount: 0,
  decodedBytes: 0, // UTF-8 bytes of the JSON text of every message
  compressedMessages: 0, // messages that arrived with RSV1 set (counted at ws's inflater)
  compressedBytes: 0, // their payload bytes as sent
  steps: [], // the step of every quotes frame, in arrival order
  feeds: {},
};
const book = new Map(); // symbol -> {quote: whole quote in cents, history: [[seq, price cents], ...]}
let socket = null; // the TCP socket under the WebSocket, for bytesRead
let response = null;
let ready = false;
let lastStep = null;

function error(message) {
  stats.errorCount += 1;
  if (stats.errors.length < MAX_ERRORS) stats.errors.push(message);
}

// A price on the wire (dollars, at most two decimals) as integer cents; null (and an error) if it is not one.
function cents(value, what) {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    error(`${what}: not a number: ${JSON.stringify(value)}`);
    return null;
  }
  const c = Math.round(value * 100);
  if (Math.abs(value * 100 - c) > 1e-6) error(`${what}: more than two decimals: ${value}`);
  return c;
}

// change_pct in hundredths of a percent: round half to even of change * 10000 / prev_close, integers only.
function derivedPct(change, prevClose) {
  if (prevClose === 0) return 0;
  const negative = change < 0 !== prevClose < 0;
  const n = Math.abs(change) * 10000;
  const d = Math.abs(prevClose);
  let q = Math.floor(n / d);
  const twice = 2 * (n - q * d);
  if (twice > d || (twice === d && q % 2 === 1)) q += 1;
  return negative ? -q : q;
}

// A whole quote from the wire, in cents, with its own change and change_pct checked against the derived ones.
function wholeFromWire(raw, where) {
  const quote = { symbol: raw.symbol, seq: raw.seq, ts: raw.ts, volume: raw.volume, halted: raw.halted };
  for (const key of MONEY) quote[key] = cents(raw[key], `${where} ${key}`);
  const change = cents(raw.change, `${where} change`);
  const pct = cents(raw.change_pct, `${where} change_pct`);
  derive(quote);
  if (change !== quote.change) error(`${where}: change ${raw.change}, derived ${quote.change / 100}`);
  if (pct !== quote.change_pct) error(`${where}: change_pct ${raw.change_pct}, derived ${quote.change_pct / 100}`);
  return quote;
}

function derive(quote) {
  quote.change = quote.price - quote.prev_close;
  quote.change_pct = derivedPct(quote.change, quote.prev_close);
}

function check(quote, where) {
  if (!Number.isInteger(quote.seq) || quote.seq < 0) error(`${where}: seq ${quote.seq}`);
  if (!Number.isInteger(quote.volume) || quote.volume < 0) error(`${where}: volume ${quote.volume}`);
  if (!Number.isInteger(quote.ts)) error(`${where}: ts ${quote.ts}`);
  if (typeof quote.halted !== "boolean") error(`${where}: halted ${quote.halted}`);
  if (!(quote.low <= quote.price && quote.price <= quote.high)) {
    error(`${where}: price ${quote.price} outside low ${quote.low} .. high ${quote.high} (cents)`);
  }
}

function hold(quote) {
  let entry = book.get(quote.symbol);
  if (!entry) book.set(quote.symbol, (entry = { quote, history: [] }));
  entry.quote = quote;
  entry.history.push([quote.seq, quote.price]);
  if (entry.history.length > historyLength) entry.history.shift();
}

function isWhole(raw) {
  return FIELDS.every((key) => key in raw);
}

function onSnapshot(frame) {
  for (const raw of frame.quotes) {
    const where = `snapshot step ${frame.step} ${raw.symbol} seq ${raw.seq}`;
    stats.snapshotQuotes += 1;
    if (!isWhole(raw)) {
      error(`${where}: not a whole quote: ${JSON.stringify(raw)}`);
      continue;
    }
    const held = book.get(raw.symbol);
    if (held && raw.seq < held.quote.seq) error(`${where}: goes back from seq ${held.quote.seq}`);
    const quote = wholeFromWire(raw, where);
    check(quote, where);
    hold(quote);
  }
}

function onQuotes(frame) {
  if (frame.conflated) error(`quotes step ${frame.step}: conflated, but no max_rate was asked for`);
  if (lastStep !== null && frame.step <= lastStep) error(`quotes step ${frame.step} after step ${lastStep}`);
  lastStep = frame.step;
  stats.steps.push(frame.step);
  for (const raw of frame.quotes) {
    const where = `quotes step ${frame.step} ${raw.symbol} seq ${raw.seq}`;
    const held = book.get(raw.symbol)?.quote;
    const follows = held !== undefined && raw.seq === held.seq + 1;
    if (!follows) stats.gaps.push([raw.symbol, held ? held.seq : null, raw.seq]);
    for (const key of Object.keys(raw)) if (!FIELDS.includes(key)) error(`${where}: unknown field ${key}`);
    if (isWhole(raw)) {
      stats.wholeInQuotes += 1;
      const quote = wholeFromWire(raw, where);
      check(quote, where);
      hold(quote);
    } else {
      stats.deltas += 1;
      for (const key of DERIVED) if (key in raw) error(`${where}: a delta carries ${key}`);
      if (!follows) {
        error(`${where}: a delta for a symbol not held at seq - 1 (held ${held ? held.seq : "nothing"})`);
        continue;
      }
      const quote = { ...held, seq: raw.seq };
      for (const [key, value] of Object.entries(raw)) {
        if (key === "symbol" || key === "seq" || DERIVED.has(key)) continue;
        const next = MONEY.includes(key) ? cents(value, `${where} ${key}`) : value;
        if (next === held[key]) stats.redundantFields += 1;
        quote[key] = next;
      }
      derive(quote);
      check(quote, where);
      hold(quote);
    }
    stats.quotes += 1;
  }
}

function onMessage(data, isBinary) {
  stats.frames += 1;
  stats.decodedBytes += data.length;
  if (isBinary) {
    error(`a binary frame of ${data.length} bytes`);
    return;
  }
  let frame;
  try {
    frame = JSON.parse(data.toString("utf8"));
  } catch (e) {
    error(`frame ${stats.frames} does not decode: ${e.message}: ${data.toString("utf8").slice(0, 200)}`);
    return;
  }
  stats.frameTypes[frame.type] = (stats.frameTypes[frame.type] || 0) + 1;
  if (frame.type === "snapshot") {
    onSnapshot(frame);
    if (!ready) {
      ready = true;
      process.stdout.write(`${JSON.stringify({ event: "ready", symbols: book.size, step: frame.step })}\n`);
    }
  } else if (frame.type === "quotes") {
    onQuotes(frame);
  } else if (frame.type === "heartbeat") {
    stats.feeds[frame.feed] = (stats.feeds[frame.feed] || 0) + 1;
  } else {
    error(`unexpected frame: ${data.toString("utf8").slice(0, 200)}`);
  }
  if (stopAt) finishIfHeld();
}

let stopAt = null; // {symbol: seq}: finish once every one is held at that seq or later
function finishIfHeld() {
  if (Object.entries(stopAt).every(([symbol, seq]) => (book.get(symbol)?.quote.seq ?? -1) >= seq)) finish();
}

const ws = new WebSocket(url, [SUBPROTOCOL], { origin, perMessageDeflate: true });
ws.on("upgrade", (res) => {
  response = res;
  socket = res.socket;
});
ws.on("open", () => {
  // ws inflates RSV1 frames without saying which were (its only hook is private): the compression shows in
  // the socket's bytes against the JSON decoded, and in the negotiated `ws.extensions`.
  stats.compressedMessages = null;
  ws.send(JSON.stringify({ action: "subscribe", symbols: ["*"] }));
});
ws.on("message", onMessage);
let closed = null;
ws.on("close", (code, reason) => {
  closed = { code, reason: reason.toString() };
  finish();
});
ws.on("error", (e) => error(`socket error: ${e.message}`));

let finished = false;
function finish() {
  if (finished) return;
  finished = true;
  const symbols = {};
  for (const [symbol, { quote, history }] of [...book].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const dollars = { ...quote };
    for (const key of [...MONEY, "change", "change_pct"]) dollars[key] = quote[key] / 100;
    dollars.history = Object.fromEntries(history.map(([seq, price]) => [seq, price / 100]));
    symbols[symbol] = dollars;
  }
  const summary = {
    event: "summary",
    client: `node ${process.version}, ws ${WS_VERSION}`,
    extensions: response?.headers["sec-websocket-extensions"] ?? null,
    negotiated: ws.extensions ? [ws.extensions.split(";")[0].trim()] : [],
    protocol: ws.protocol,
    closed,
    socketBytesRead: socket ? socket.bytesRead : null,
    ...stats,
    book: symbols,
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`, () => process.exit(0));
  if (ws.readyState === WebSocket.OPEN) ws.close(1000);
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) return;
  stopAt = JSON.parse(line).stop_at;
  finishIfHeld();
});
lines.on("close", finish);
process.on("SIGTERM", finish);
process.on("SIGINT", finish);
setTimeout(finish, maxSeconds * 1000).unref();
