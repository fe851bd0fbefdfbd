// The echo exchange of the browser tests' pages (page.html, http2.html).
// The tests inline this file in place of a page's script element that
// loads echo.js (tests/harness/browsers.py, browser_page()): the echo
// example's --page serves one file for every plain GET.
'use strict';

function bytesOf(data) {
  return typeof data === 'string' ? new TextEncoder().encode(data) : new Uint8Array(data);
}
function equal(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
function pseudoRandom(n) {  // xorshift32: incompressible enough, reproducible
  const a = new Uint8Array(n);
  let x = 2463534242;
  for (let i = 0; i < n; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; a[i] = x & 255; }
  return a;
}
function withTimeout(promise, ms, what) {
  return Promise.race([promise, new Promise((_, reject) =>
    setTimeout(() => reject(new Error('timeout: ' + what)), ms))]);
}

// Opens `url`, sends each [name, payload] of `messages` and compares its
// echo byte for byte, then closes with 1000; records all in `out`
// (opened, extensions, protocol, steps, close).
async function echoSession(url, messages, out) {
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const inbox = [];
  let waiting = null;
  ws.onmessage = (e) => { inbox.push(e.data); if (waiting) { const w = waiting; waiting = null; w(); } };
  const next = () => new Promise((resolve) => {
    if (inbox.length) resolve(inbox.shift()); else waiting = () => resolve(inbox.shift());
  });
  const closed = new Promise((resolve) => {
    ws.onclose = (e) => resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean });
  });
  await withTimeout(new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error('WebSocket error before open'));
  }), 10000, 'open');
  out.opened = true;
  out.extensions = ws.extensions;
  out.protocol = ws.protocol;

  for (const [name, payload] of messages) {
    ws.send(payload);
    const data = await withTimeout(next(), 20000, name);
    const sent = payload instanceof Blob ? new Uint8Array(await payload.arrayBuffer()) : bytesOf(payload);
    const got = bytesOf(data);
    out.steps.push({ name, binary: typeof data !== 'string', sent_len: sent.length,
                     recv_len: got.length, equal: equal(sent, got) });
  }
  ws.close(1000, 'browser done');
  out.close = await withTimeout(closed, 10000, 'close');
}
