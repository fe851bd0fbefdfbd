"""A cluster node for test_cluster.py, run as its own process:

    python cluster_node.py PORT REDIS_URL [--reuse-port] [--threaded | --tornado]

The standalone server (on polysocket's loop, or ``--threaded`` on
asyncio's), or with ``--tornado`` a Tornado application with the drop-in's
handler (``polysocket.tornado.join_cluster``): both handler classes have
the same class-level cluster helpers, so one mixin drives either.

It speaks the chat example's JSON events (``{"event": "message", "name",
"text"}`` to the room ``chat``, which every connection joins), so that it
shares a room with core/examples/chat_node.rs, and takes JSON commands that
drive the class-level cluster helpers of ``WebSocketHandler``:

* ``{"op": "group", "text": t}`` / ``{"op": "all", "text": t}``: a chat
  message to the room / an ``"all"`` event to every connection;
* ``{"op": "id"}``: answers ``{"id": connection_id}``;
* ``{"op": "send" | "ping" | "close", "to": id, ...}``: answers
  ``{"ok": result}`` or ``{"error": exception class name}``;
* ``{"op": "presence", "group": g}``: answers ``{"presence": n, "nodes": [...]}``;
* ``{"op": "stats"}``: answers ``{"stats": cluster_stats()}``.

Prints ``ready PORT NODE`` once serving.
"""

import asyncio
import json
import signal
import sys
from typing import Any, Dict

import polysocket

ROOM = "chat"


class Commands:
    """The node's behaviour, for either handler class."""

    def open(self) -> None:
        self.name = self.get_argument("name", "guest-%d" % self.connection_id)
        self.join(ROOM)

    def on_message(self, message: Any) -> None:
        try:
            cmd: Dict[str, Any] = json.loads(message)
        except ValueError:
            self.broadcast_group(ROOM, {"event": "message", "name": self.name, "text": message})
            return
        op = cmd["op"]
        if op == "group":
            self.broadcast_group(ROOM, {"event": "message", "name": self.name, "text": cmd["text"]})
        elif op == "all":
            self.broadcast({"event": "all", "name": self.name, "text": cmd["text"]})
        elif op == "id":
            self.write_message({"id": self.connection_id})
        elif op == "presence":
            self.write_message({"presence": self.presence(cmd.get("group")),
                                "nodes": self.nodes()})
        elif op == "stats":
            self.write_message({"stats": self.cluster_stats()})
        else:
            try:
                if op == "send":
                    result = self.send_to(cmd["to"], cmd["text"])
                elif op == "ping":
                    result = self.ping_to(cmd["to"], cmd.get("data"))
                else:
                    result = self.close_to(cmd["to"], cmd.get("code"), cmd.get("reason"))
                self.write_message({"ok": result})
            except (ValueError, polysocket.WebSocketClosedError) as e:
                self.write_message({"error": type(e).__name__})

    def on_close(self) -> None:
        self.leave(ROOM)


class Node(Commands, polysocket.WebSocketHandler):
    pass


async def main(port: int, url: str, reuse_port: bool) -> None:
    server = polysocket.Server([(r"/chat", Node)], "127.0.0.1", port, cluster=url,
                               namespace="test", reuse_port=reuse_port,
                               cluster_heartbeat=0.2, cluster_expiry=1.0)
    server.start()
    print("ready", server.port, server._native.node_id, flush=True)
    await server.serve_forever()


async def tornado_main(port: int, url: str) -> None:
    import tornado.web

    from polysocket.tornado import WebSocketHandler, join_cluster

    class TornadoNode(Commands, WebSocketHandler):
        pass

    cluster = join_cluster(url, "test", heartbeat=0.2, expiry=1.0)
    app = tornado.web.Application([(r"/chat", TornadoNode)])
    app.listen(port, "127.0.0.1")
    print("ready", port, cluster.node.node_id, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    cluster.stop()


if __name__ == "__main__":
    port, url = int(sys.argv[1]), sys.argv[2]
    coro = main(port, url, "--reuse-port" in sys.argv)
    if "--tornado" in sys.argv:
        coro.close()
        asyncio.run(tornado_main(port, url))
    elif "--threaded" in sys.argv:
        asyncio.run(coro)
    else:
        polysocket.run(coro)
