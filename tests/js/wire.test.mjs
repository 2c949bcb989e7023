import assert from "node:assert/strict";
import { test } from "node:test";

import { requestHeaderBytes, sseOverhead, trafficBytes, wsFrameHeader } from "../../static/ticker/js/wire.js";

/** The page globals requestHeaderBytes reads, for one test. */
function installPage(t) {
  const names = ["window", "navigator", "document"];
  const had = names.map((name) => [name, Object.getOwnPropertyDescriptor(globalThis, name)]);
  Object.assign(globalThis, {
    window: { location: { host: "127.0.0.1:8000", href: "http://127.0.0.1:8000/lab/" } },
    navigator: { userAgent: "test-agent", languages: ["en"] },
    document: { cookie: "" },
  });
  t.after(() => {
    for (const [name, descriptor] of had) {
      if (descriptor) Object.defineProperty(globalThis, name, descriptor);
      else delete globalThis[name];
    }
  });
}

test("trafficBytes counts a received WebSocket frame as its UTF-8 text and an unmasked frame header", () => {
  const text = JSON.stringify({ type: "quotes", name: "é" });
  const payload = Buffer.byteLength(text);
  assert.deepEqual(trafficBytes({ kind: "websocket", direction: "in", text }), [
    { payload, overhead: wsFrameHeader(payload) },
  ]);
});

test("trafficBytes counts a sent WebSocket frame with the 4-byte mask a browser adds", () => {
  const [{ overhead }] = trafficBytes({ kind: "websocket", direction: "out", text: "{}" });
  assert.equal(overhead, 2 + 4);
});

test("trafficBytes counts an SSE event's field lines and chunk framing as overhead", () => {
  const text = '{"type":"heartbeat"}';
  assert.deepEqual(trafficBytes({ kind: "sse", event: "heartbeat", id: "12", text }), [
    { payload: text.length, overhead: sseOverhead("heartbeat", "12", text.length) },
  ]);
});

test("trafficBytes counts an HTTP exchange as two messages: the request's head, then the answer's head and body", (t) => {
  installPage(t);
  const response = { status: 304, statusText: "Not Modified", headers: new Map([["etag", '"v1"']]) };
  const headers = { "If-None-Match": '"v1"' };
  const [request, answer] = trafficBytes({ kind: "http", path: "/api/quotes/", headers, response, text: "" });
  assert.deepEqual(request, { payload: 0, overhead: requestHeaderBytes("/api/quotes/", headers) });
  assert.ok(request.overhead > requestHeaderBytes("/api/quotes/"), "the If-None-Match header is counted");
  assert.deepEqual(answer, { payload: 0, overhead: "HTTP/1.1 304 Not Modified\r\n".length + 2 + 'etag"v1"'.length + 4 });
});

test("trafficBytes refuses a record it does not know, rather than counting nothing", () => {
  assert.throws(() => trafficBytes({ kind: "carrier-pigeon", text: "" }), /unknown traffic kind carrier-pigeon/);
});
