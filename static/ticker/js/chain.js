// The transport chain: WebSocket, then Server-Sent Events, then long-polling,
// then polling. Like Socket.IO or Lightstreamer, it falls back on its own when
// a transport cannot connect (blocked by a proxy, refused, silent) and tries
// to upgrade back later without dropping the transport it has.
import { LongPollTransport, PollingTransport, SseTransport, WebSocketTransport } from "./transport.js";

export const TRANSPORTS = ["websocket", "sse", "longpoll", "polling"];
/** Pulled transports hand every answer on as a snapshot; those snapshots are also their updates. */
export function measuresSnapshots(transport) {
  return transport === "polling" || transport === "longpoll";
}
const CLASSES = {
  websocket: WebSocketTransport,
  sse: SseTransport,
  longpoll: LongPollTransport,
  polling: PollingTransport,
};

/** A transport by name ("websocket", "sse", "longpoll", "polling"), not started. */
export function makeTransport(name, handlers, options) {
  return new CLASSES[name](handlers, options);
}

export class TransportChain {
  /**
   * handlers: status(state, detail, transport), snapshot, quotes, request(transport), and the
   * optional feedState, session, movers, delisted and error (transport.js).
   * movers: how many gainers and losers to follow (0: none), on whichever transport is in use.
   * pinned: a transport name to use alone (no fallback, no upgrade), or null for the chain.
   * transportOptions: given to every transport it makes (e.g. silenceMs from the page's config).
   */
  constructor(
    handlers,
    { symbols = ["*"], movers = 0, pinned = null, upgradeMs = 30000, make = makeTransport, transportOptions = {} } = {},
  ) {
    if (pinned !== null && !TRANSPORTS.includes(pinned)) throw new Error(`unknown transport ${pinned}`);
    this.handlers = handlers;
    this.symbols = symbols;
    this.movers = movers;
    this.pinned = pinned;
    this.upgradeMs = upgradeMs;
    this.make = make;
    this.transportOptions = transportOptions;
    this.index = pinned ? TRANSPORTS.indexOf(pinned) : 0;
    this.active = null;
    this.probe = null;
    this.timer = null;
    this.stopped = false;
  }

  /** The name of the transport in use. */
  get transport() {
    return TRANSPORTS[this.index];
  }

  start() {
    this.stopped = false;
    this.use(this.index);
  }

  use(index) {
    this.active?.stop();
    this.index = index;
    const slot = { index, live: true };
    this.active = this.create(slot);
    this.active.start();
    this.scheduleUpgrade();
  }

  create(slot) {
    const name = TRANSPORTS[slot.index];
    // Only the transport in use speaks to the page.
    const live = () => slot.live && this.index === slot.index;
    const handlers = {
      status: (state, detail) => slot.live && this.index === slot.index && this.handlers.status(state, detail, name),
      snapshot: (quotes, step) => {
        if (!slot.live) this.promote(slot);
        if (this.index === slot.index) this.handlers.snapshot(quotes, step);
      },
      quotes: (quotes, step) => slot.live && this.index === slot.index && this.handlers.quotes(quotes, step),
      feedState: (state) => live() && this.handlers.feedState?.(state),
      session: (session) => live() && this.handlers.session?.(session),
      movers: (frame) => live() && this.handlers.movers?.(frame),
      delisted: (symbols) => live() && this.handlers.delisted?.(symbols),
      personal: (frame) => live() && this.handlers.personal?.(frame),
      error: (frame) => live() && this.handlers.error?.(frame),
      request: () => this.handlers.request(name),
      failed: (reason) => (slot.live ? this.fallBack(slot, reason) : this.probeFailed(slot)),
      // A full server is no reason to leave a transport: the live one waits and retries on its own.
      busy: () => !slot.live && this.probeBusy(slot),
    };
    // Only the chain fails fast; a pinned transport keeps retrying with backoff.
    const options = {
      ...this.transportOptions,
      symbols: this.symbols,
      movers: this.movers,
      failFast: this.pinned === null,
    };
    slot.transport = this.make(name, handlers, options);
    return slot.transport;
  }

  fallBack(slot, reason) {
    if (this.stopped || this.index !== slot.index) return;
    console.info(`ticker: ${TRANSPORTS[slot.index]} failed (${reason}); falling back`);
    if (slot.index + 1 < TRANSPORTS.length) this.use(slot.index + 1);
  }

  scheduleUpgrade() {
    clearTimeout(this.timer);
    if (this.pinned !== null || this.index === 0 || this.stopped) return;
    this.timer = setTimeout(() => this.tryUpgrade(0), this.upgradeMs);
  }

  /** Open a better transport beside the live one; switch only once it has delivered a snapshot. */
  tryUpgrade(index) {
    // With an empty watchlist no transport sends a snapshot, so a probe could never prove itself.
    if (this.stopped || index >= this.index || !this.symbols.length) return this.scheduleUpgrade();
    const slot = { index, live: false };
    this.probe = this.create(slot);
    this.probe.start();
  }

  probeFailed(slot) {
    if (this.probe !== slot.transport) return;
    this.probe = null;
    this.tryUpgrade(slot.index + 1);
  }

  /** A probe told the server is full: drop it and try again at the next upgrade, not with a worse transport. */
  probeBusy(slot) {
    if (this.probe !== slot.transport) return;
    this.probe = null;
    slot.transport.stop();
    this.scheduleUpgrade();
  }

  promote(slot) {
    this.active?.stop();
    this.probe = null;
    slot.live = true;
    this.active = slot.transport;
    this.index = slot.index;
    this.handlers.status("live", slot.transport.label, TRANSPORTS[slot.index]);
    this.scheduleUpgrade();
  }

  setSymbols(symbols) {
    this.symbols = symbols;
    this.active?.setSymbols(symbols);
    // A probe still opening follows the new set too, so a promotion keeps the watchlist.
    this.probe?.setSymbols(symbols);
  }

  setMovers(count) {
    this.movers = count;
    this.active?.setMovers(count);
    this.probe?.setMovers(count);
  }

  resync(symbols) {
    this.active?.resync(symbols);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.probe?.stop();
    this.active?.stop();
  }
}
