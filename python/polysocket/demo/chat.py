"""Chat server: the page at ``/`` joins the room at ``/chat``; every message
goes to everyone in the room (one encode for all, ``broadcast_group``).

    python -m polysocket chat --host 127.0.0.1 --port 9002

With ``--cluster redis://127.0.0.1:6379`` the room spans every node of the
namespace (``--namespace``, default ``chat``): Python, Rust
(core/examples/chat_node.rs) and PHP nodes speak the same JSON events.
``--processes N`` runs N such servers on one port.
"""

import json
import os

from polysocket import WebSocketHandler, serve

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chat.html")
ROOM = "chat"


class ChatHandler(WebSocketHandler):
    def open(self):
        self.name = self.get_argument("name", "guest-%d" % self.connection_id)[:32]
        self.join(ROOM)
        self.broadcast_group(ROOM, {"event": "join", "name": self.name})

    def on_message(self, message):
        if not isinstance(message, str) or not message.strip():
            return
        self.broadcast_group(ROOM, {"event": "message", "name": self.name, "text": message[:4096]})

    def on_close(self):
        self.leave(ROOM)
        self.broadcast_group(ROOM, {"event": "leave", "name": self.name})


ROUTES = [(r"/chat", ChatHandler)]


def pages():
    with open(PAGE, "rb") as f:
        return {"/": f.read()}


def main(host="127.0.0.1", port=9002, **options):
    serve(ROUTES, host, port, pages=pages(), **options)


if __name__ == "__main__":
    main()
