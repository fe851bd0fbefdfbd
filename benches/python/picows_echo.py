"""picows echo server, the peer of the Python benchmark (scripts/bench-python.sh).

    python picows_echo.py --port P [--uvloop]

picows parses frames in Cython on asyncio's transport; each frame is echoed
straight from its buffer (no reassembly: the load generator sends whole
messages in single frames).
"""

import argparse
import asyncio

from picows import WSListener, WSMsgType, ws_create_server


class Echo(WSListener):
    def on_ws_frame(self, transport, frame):
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
            transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)
        elif frame.msg_type == WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())


async def main(host, port):
    server = await ws_create_server(lambda request: Echo(), host, port,
                                    max_frame_size=64 * 1024 * 1024)
    print("picows echo on ws://%s:%d" % (host, port), flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--uvloop", action="store_true")
    a = p.parse_args()
    if a.uvloop:
        import uvloop
        uvloop.install()
    asyncio.run(main(a.host, a.port))
