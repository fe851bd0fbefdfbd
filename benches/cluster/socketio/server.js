// A Socket.IO 4 node of the fan-out benchmark (issue 13): every "msg"
// event is emitted to every client of every node (io.emit), across nodes
// through @socket.io/redis-adapter on one Redis (the adapter's default
// pub/sub mode, with the `redis` v4 client).
//
//   node server.js --port P --cluster redis://127.0.0.1:R [--host 127.0.0.1]
//
// Installed and run by scripts/bench-cluster.sh (NODE_PATH points at its
// npm install in target/bench-node).
"use strict";

const { createServer } = require("http");
const { Server } = require("socket.io");
const { createClient } = require("redis");
const { createAdapter } = require("@socket.io/redis-adapter");

function arg(name, fallback) {
  const i = process.argv.indexOf("--" + name);
  if (i > 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (fallback === undefined) {
    console.error(`--${name} is required`);
    process.exit(2);
  }
  return fallback;
}

async function main() {
  const port = Number(arg("port"));
  const host = arg("host", "127.0.0.1");
  const pub = createClient({ url: arg("cluster") });
  const sub = pub.duplicate();
  for (const [name, c] of [["pub", pub], ["sub", sub]]) {
    c.on("error", (e) => console.error(`redis ${name}: ${e.message}`));
  }
  await Promise.all([pub.connect(), sub.connect()]);

  const http = createServer();
  const io = new Server(http, {
    adapter: createAdapter(pub, sub),
    transports: ["websocket"], // the load generator speaks WebSocket only
    serveClient: false,
  });
  io.on("connection", (socket) => {
    socket.on("msg", (data) => io.emit("msg", data));
  });
  http.listen(port, host, () => console.log(`socket.io node on ${host}:${port}`));
  const stop = () => io.close(() => Promise.all([pub.quit(), sub.quit()]).finally(() => process.exit(0)));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
