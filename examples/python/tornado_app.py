"""A Tornado chat application on polysocket.tornado: the handler is plain
Tornado code (only the import changed), and browsers or scripts of any
WebSocket draft, hixie-75 to RFC 6455, join the same room.

    python examples/python/tornado_app.py --port 8888
    python -c "import asyncio, polysocket
    async def main():
        ws = await polysocket.connect('ws://127.0.0.1:8888/chat', draft='hixie-76')
        await ws.send('hello'); print(await ws.recv()); await ws.close()
    asyncio.run(main())"
"""

import argparse
import asyncio
import logging

import tornado.web

from polysocket.tornado import WebSocketHandler


class ChatHandler(WebSocketHandler):
    room: "set[ChatHandler]" = set()

    def get_compression_options(self):
        return {}  # compress on every draft that has an extension

    def open(self):
        self.room.add(self)
        self.broadcast(f"* someone joined with {self.draft}")

    def on_message(self, message):
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        self.broadcast(message)

    def on_close(self):
        self.room.discard(self)
        self.broadcast(f"* someone left ({self.close_code})")

    @classmethod
    def broadcast(cls, text):
        for member in list(cls.room):
            if not member.ws_connection or member.ws_connection.is_closing():
                continue
            member.write_message(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    async def serve():
        tornado.web.Application([("/chat", ChatHandler)]).listen(args.port, args.host)
        logging.info("chat on ws://%s:%d/chat", args.host, args.port)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
