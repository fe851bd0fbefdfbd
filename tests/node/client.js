// Node `ws` client run by tests/test_node_ws.py:
//   node client.js URL [--no-deflate]
// Exchanges text, binary and 1 MiB messages with the echo server, closes
// with 1000, and prints one JSON object describing what happened. It
// compares nothing itself beyond byte equality: the Python side asserts.
'use strict';

const crypto = require('crypto');
const WebSocket = require('ws');

const url = process.argv[2];
const deflate = !process.argv.includes('--no-deflate');
const result = { url, deflate, opened: false, steps: [] };

function done(extra) {
  Object.assign(result, extra);
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

setTimeout(() => done({ error: 'timeout after 30 s' }), 30000).unref();

const ws = new WebSocket(url, { perMessageDeflate: deflate, maxPayload: 64 * 1024 * 1024 });
const inbox = [];
let waiting = null;
ws.on('message', (data, isBinary) => {
  inbox.push({ data, isBinary });
  if (waiting) { const w = waiting; waiting = null; w(); }
});
const next = () => new Promise((resolve) => {
  if (inbox.length) return resolve(inbox.shift());
  waiting = () => resolve(inbox.shift());
});

async function exchange(name, payload, binary) {
  const sent = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  await new Promise((resolve, reject) =>
    ws.send(payload, { binary }, (err) => (err ? reject(err) : resolve())));
  const { data, isBinary } = await next();
  result.steps.push({
    name,
    binary: isBinary,
    sent_len: sent.length,
    recv_len: data.length,
    equal: Buffer.compare(sent, data) === 0,
    sha256: crypto.createHash('sha256').update(data).digest('hex'),
  });
}

ws.on('error', (err) => done({ error: String(err) }));
ws.on('unexpected-response', (req, res) => done({ error: 'HTTP ' + res.statusCode }));
ws.on('close', (code, reason) => done({ close_code: code, close_reason: reason.toString() }));
ws.on('open', async () => {
  result.opened = true;
  result.extensions = ws.extensions;  // the negotiated Sec-WebSocket-Extensions
  try {
    await exchange('text', 'Hello from Node ws ✓ κόσμε', false);
    await exchange('binary', Buffer.from([0, 1, 2, 3, 254, 255]), true);
    await exchange('empty-text', '', false);
    await exchange('1MiB-binary', crypto.randomBytes(1 << 20), true);
    await exchange('1MiB-text', 'Node ✓ compressible text. '.repeat(40330).slice(0, 1 << 20), false);
    const pong = new Promise((resolve) => ws.once('pong', (d) => resolve(d.toString())));
    ws.ping('node ping');
    result.pong = await pong;
    ws.close(1000, 'node says bye');
  } catch (err) {
    done({ error: String(err && err.stack || err) });
  }
});
