import assert from "node:assert/strict";
import { test } from "node:test";

import { AlertBook, csrfToken, describeAlert, onPersonalFrame } from "../../static/ticker/js/alerts.js";
import { TransportChain } from "../../static/ticker/js/chain.js";
import { Transport } from "../../static/ticker/js/transport.js";

const FIRED = {
  id: 3,
  symbol: "AAPL",
  condition: "price_above",
  value: "190.00",
  note: "sell half",
  state: "triggered",
  price: 190.123,
  change_pct: 1.5,
  step: 40,
  read: false,
};

test("an alert reads as the toast says it", () => {
  assert.equal(describeAlert(FIRED), "AAPL price above 190.00: now 190.12");
  assert.equal(describeAlert({ ...FIRED, state: "armed", price: null }), "AAPL price above 190.00");
  assert.equal(
    describeAlert({ ...FIRED, condition: "change_pct_below", value: "-2.5", change_pct: -2.75 }),
    "AAPL change below -2.50%: now -2.75%",
  );
});

test("the CSRF token comes from the csrftoken cookie", () => {
  assert.equal(csrfToken("sessionid=x; csrftoken=abc%3D1; other=2"), "abc=1");
  assert.equal(csrfToken("sessionid=x"), "");
});

test("the book counts a fire once, newest first, and opening reads them all", () => {
  const book = new AlertBook();
  book.load({ alerts: [{ ...FIRED, id: 1, state: "armed", step: null }], unread: 0 });
  assert.equal(book.fired(FIRED), true);
  assert.equal(book.fired(FIRED), false, "the same fire twice (two tabs' worth) counts once");
  assert.deepEqual(
    book.alerts.map((a) => a.id),
    [3, 1],
  );
  assert.equal(book.unread, 1);
  book.fired({ ...FIRED, id: 1 });
  assert.equal(book.unread, 2);
  book.markRead();
  assert.equal(book.unread, 0);
  assert.ok(book.alerts.every((a) => a.read));
  book.remove(3);
  assert.deepEqual(
    book.alerts.map((a) => a.id),
    [1],
  );
});

test("personal frames go to the alerts and to the watchlist's DOM event", () => {
  const fired = [];
  let signedOut = 0;
  const alerts = { fired: (a) => fired.push(a), signedOut: () => (signedOut += 1) };
  const target = new EventTarget();
  const seen = [];
  target.addEventListener("ticker:watchlist", (event) => seen.push(event.detail.symbols));
  target.addEventListener("ticker:signed_out", () => seen.push("out"));
  onPersonalFrame({ type: "alert", alert: FIRED }, alerts, target);
  onPersonalFrame({ type: "watchlist", symbols: ["MSFT", "AAPL"] }, alerts, target);
  onPersonalFrame({ type: "signed_out" }, alerts, target);
  onPersonalFrame({ type: "alert", alert: FIRED }, null, target); // anonymous page: nothing to show
  assert.deepEqual(fired, [FIRED]);
  assert.deepEqual(seen, [["MSFT", "AAPL"], "out"]);
  assert.equal(signedOut, 1);
});

test("a transport hands personal frames to its personal handler, through the chain", () => {
  const got = [];
  const chain = new TransportChain(
    { status() {}, snapshot() {}, quotes() {}, request() {}, personal: (frame) => got.push(frame) },
    { make: (name, handlers) => Object.assign(new Transport(handlers), { name, start() {}, stop() {} }) },
  );
  chain.start();
  const transport = chain.active;
  transport.read("alert", { type: "alert", alert: FIRED });
  transport.read("signed_out", { type: "signed_out" });
  assert.deepEqual(
    got.map((f) => f.type),
    ["alert", "signed_out"],
  );
});
