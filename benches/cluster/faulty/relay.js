// A deliberately faulty broadcast node, to show the fan-out generator sees
// every fault it claims to count (issue 13's benchmark): of the messages a
// client sends, every 11th is dropped, every 5th is sent twice, and every
// 7th is held back until the next one has gone (out of order).
//
//   NODE_PATH=target/bench-node/node_modules node benches/cluster/faulty/relay.js PORT
//   target/release/fanout --nodes ws://127.0.0.1:PORT/ --subs 50 --rate 200 --duration 2
//
// Expected per subscriber for N published: lost ≈ N/11, duplicated ≈ N/5,
// out of order ≈ N/7 (less the overlaps); see docs/BENCHMARKS.md.
"use strict";

const { WebSocketServer } = require("ws");

const wss = new WebSocketServer({ port: Number(process.argv[2]), host: "127.0.0.1" });
const all = (m) => {
  for (const c of wss.clients) c.send(m);
};
let n = 0;
let held = null;
wss.on("connection", (ws) =>
  ws.on("message", (data) => {
    const m = data.toString();
    n += 1;
    if (n % 11 === 0) return;
    if (n % 7 === 0) {
      held = m;
      return;
    }
    all(m);
    if (n % 5 === 0) all(m);
    if (held) {
      all(held);
      held = null;
    }
  }),
);
