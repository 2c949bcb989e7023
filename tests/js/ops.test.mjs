import assert from "node:assert/strict";
import { test } from "node:test";

import { ago, bytes, duration, marketRow, ms, storeRows, webRow } from "../../static/ticker/js/ops.js";

test("durations, sizes and times read as an operator writes them", () => {
  assert.equal(duration(42.7), "42 s");
  assert.equal(duration(3725), "1 h 2 min");
  assert.equal(bytes(85 * 1024 * 1024), "85.0 MiB");
  assert.equal(ms(0.123), "0.12 ms");
  assert.equal(ms(null), "–");
  assert.equal(ago(null, 10), "never");
  assert.equal(ago(8.5, 10), "1.5 s ago");
});

test("a web process's row carries its connections by transport, tagged for the view's cells", () => {
  const row = webRow({
    host: "web-1", pid: 7, uptime_s: 65, feed: "live", step: 120,
    connections: { websocket: 3, sse: 1, long_poll: 0 }, subscriptions: { all: 3, watchlist: 1 },
    frames_per_s: 16, fanout_p99_ms: 1.5, slow_clients: 0, held_back_total: 2, resnapshotted_total: 2,
    memory_bytes: 2 * 1024 * 1024,
  });
  const byField = Object.fromEntries(row.filter((cell) => cell[2]).map(([text, , field]) => [field, text]));
  assert.deepEqual(byField, {
    websocket: "3", sse: "1", long_poll: "0", subscriptions: "3 / 1", frames_per_s: "16", slow: "0 (2 / 2)",
  });
});

test("a feed that is not live, publish failures and a store that is down are marked", () => {
  assert.equal(webRow({ host: "h", pid: 1, feed: "interrupted" })[3][1], "bad");
  assert.equal(marketRow({ host: "h", pid: 2, publish_failures: 3 }, 0)[6][1], "num bad");
  const [redis, database] = storeRows({
    redis: { ok: false, error: "ConnectionError: refused" }, database: { ok: true, ping_ms: 0.4, vendor: "sqlite" },
  });
  assert.deepEqual(redis[1], ["DOWN", "bad"]);
  assert.equal(redis[3][0], "ConnectionError: refused");
  assert.deepEqual(database[1], ["up", ""]);
});

test("the market row shows the alert figures (issue 23), failed deliveries marked bad", () => {
  const row = marketRow({ host: "h", alerts_armed: 1200, alerts_fired: 7, alert_evaluation_ms: 1.25, alert_delivery_failures: 2 }, 0);
  assert.deepEqual(row.slice(8, 12).map((cell) => cell[0]), ["1200", "7", "1.25 ms", "2"]);
  assert.equal(row[11][1], "num bad");
});
