"""Echo server for the Tornado drop-in benchmark: the same handler code on
Tornado's own WebSocketHandler or on polysocket.tornado's, in the same kind
of Tornado application, on one IOLoop (one core).

    python benches/python/tornado_echo.py --impl tornado|polysocket --port N
"""

import argparse
import asyncio
import importlib

import tornado.web


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", choices=["tornado", "polysocket"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    module = importlib.import_module(
        "tornado.websocket" if args.impl == "tornado" else "polysocket.tornado"
    )

    class Echo(module.WebSocketHandler):
        def open(self):
            # Tornado's advice for request/response traffic, on both sides.
            self.set_nodelay(True)

        def on_message(self, message):
            self.write_message(message, binary=isinstance(message, bytes))

    async def serve() -> None:
        app = tornado.web.Application(
            [("/", Echo)], websocket_max_message_size=64 * 1024 * 1024
        )
        app.listen(args.port, args.host)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
