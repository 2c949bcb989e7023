// Byte accounting for the Lab: what each message costs on the wire, layer by layer.
// Payload sizes are measured; header sizes are computed from the protocol
// rules (RFC 6455 frame headers, SSE field lines, HTTP/1.1 chunked encoding)
// or, for HTTP headers the browser does not expose, estimated (marked "est.").
// The transports know nothing of this: they report what they sent and read
// through their traffic hook (transport.js), and the Lab counts it here.

const encoder = new TextEncoder();
// IPv4 (20) + TCP (20) + timestamp option (12); segments carry at most an MSS of 1448 bytes.
export const TCP_IP_HEADER = 52;
export const MSS = 1448;

export function utf8Length(text) {
  return encoder.encode(text).length;
}

/** RFC 6455 section 5.2: 2 bytes, +2 for 126..65535 bytes, +8 beyond; +4 mask from clients. */
export function wsFrameHeader(payloadBytes, { masked = false } = {}) {
  const base = payloadBytes < 126 ? 2 : payloadBytes < 65536 ? 4 : 10;
  return base + (masked ? 4 : 0);
}

export function tcpIpOverhead(bytes) {
  return Math.max(1, Math.ceil(bytes / MSS)) * TCP_IP_HEADER;
}

/** An SSE event as the server writes it, inside one HTTP/1.1 chunk. */
export function sseOverhead(type, id, dataBytes) {
  const event = `id: ${id}\nevent: ${type}\ndata: `.length + 2;
  const chunk = (event + dataBytes).toString(16).length + 4; // "<hex>\r\n" ... "\r\n"
  return event + chunk;
}

/** Response status line and headers as they crossed the wire (the browser lists them for same-origin). */
export function responseHeaderBytes(response) {
  let bytes = `HTTP/1.1 ${response.status} ${response.statusText}\r\n`.length + 2;
  response.headers.forEach((value, name) => (bytes += name.length + value.length + 4));
  return bytes;
}

/** The request line and the headers a browser sends with a same-origin GET (est.: some are hidden from scripts). */
export function requestHeaderBytes(url, extra = {}) {
  const lines = [
    `GET ${url} HTTP/1.1`,
    `Host: ${window.location.host}`,
    "Connection: keep-alive",
    `User-Agent: ${navigator.userAgent}`,
    "Accept: */*",
    `Referer: ${window.location.href}`,
    "Accept-Encoding: gzip, deflate, br, zstd",
    `Accept-Language: ${navigator.languages.join(",")}`,
    ...Object.entries(extra).map(([k, v]) => `${k}: ${v}`),
  ];
  if (document.cookie) lines.push(`Cookie: ${document.cookie}`);
  return lines.reduce((n, line) => n + line.length + 2, 2);
}

/**
 * The messages one traffic record of a transport (transport.js) put on the
 * wire, each as {payload, overhead} bytes: an HTTP exchange is two messages,
 * the request (all overhead) and the response.
 */
export function trafficBytes(record) {
  const payload = utf8Length(record.text);
  switch (record.kind) {
    case "websocket":
      // Frames from a browser are masked (RFC 6455 section 5.3).
      return [{ payload, overhead: wsFrameHeader(payload, { masked: record.direction === "out" }) }];
    case "sse":
      return [{ payload, overhead: sseOverhead(record.event, record.id, payload) }];
    case "http":
      return [
        { payload: 0, overhead: requestHeaderBytes(record.path, record.headers) },
        { payload, overhead: responseHeaderBytes(record.response) },
      ];
    default:
      throw new Error(`unknown traffic kind ${record.kind}`);
  }
}

/** Whether a WebSocket's negotiated extensions (WebSocket.extensions) include permessage-deflate. */
export function deflates(extensions) {
  return /(^|,)\s*permessage-deflate\b/.test(extensions ?? "");
}

/**
 * The size of `text` deflated on its own, as the server sends a frame with permessage-deflate
 * (ticker/edge/server.py): measured with the browser's own DEFLATE (CompressionStream), so within a few
 * bytes of the server's (the level differs), hence an estimate (est.).
 */
export async function deflatedLength(text) {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("deflate-raw"));
  return (await new Response(stream).arrayBuffer()).byteLength;
}
