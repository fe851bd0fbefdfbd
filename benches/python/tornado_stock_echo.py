"""Tornado's own WebSocketHandler echo (pure Python), the reference row of
the Python benchmark (scripts/bench-python.sh).

    python tornado_stock_echo.py --port P
"""

import argparse
import asyncio

import tornado.web
import tornado.websocket


class Echo(tornado.websocket.WebSocketHandler):
    def check_origin(self, origin):
        return True

    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


async def main(host, port):
    app = tornado.web.Application([(r"/.*", Echo)], websocket_max_message_size=64 * 1024 * 1024)
    app.listen(port, host)
    print("tornado echo on ws://%s:%d" % (host, port), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    asyncio.run(main(a.host, a.port))
