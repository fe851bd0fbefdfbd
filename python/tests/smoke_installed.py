"""Smoke test of an installed polysocket (a wheel in a fresh venv, no Rust
on PATH; scripts/test-wheels.sh): the standalone echo server started as
`python -m polysocket echo` answers an RFC 6455 client (websockets) and a
hixie-76 client (raw socket), and the Tornado drop-in answers Tornado's own
client. Run from outside the source tree so that the installed package,
not python/polysocket, is the one imported.

    python smoke_installed.py EXPECTED-VERSION
"""

import asyncio
import os
import socket
import subprocess
import sys
import time

import polysocket
import polysocket.tornado
import tornado.web
import tornado.websocket
from websockets.sync.client import connect

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "harness"))
import rawws  # noqa: E402

HIXIE76_REQUEST = (b"GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\nUpgrade: WebSocket\r\n"
                   b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
                   b"Origin: http://example.com\r\n\r\n^n:ds[4U")
HIXIE76_ANSWER = b"8jKS'y:G*Co,Wxa-"  # the draft's example


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_installed(version: str) -> None:
    where = os.path.dirname(polysocket.__file__)
    assert "site-packages" in where, "polysocket imported from %s, not the venv" % where
    out = subprocess.run([sys.executable, "-m", "polysocket", "--version"], check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == "polysocket " + version, out
    assert polysocket.__version__ == version
    for f in ("py.typed", "_native.pyi", "_native_server.pyi"):
        assert os.path.exists(os.path.join(where, f)), "wheel lacks %s" % f
    print("  installed: %s, %s" % (where, out))


def standalone_echo() -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "polysocket", "echo", "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith("echo server on ws://127.0.0.1:%d" % port)
        deadline = time.monotonic() + 10
        while True:  # the line comes before the bind
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "echo server not listening"
                time.sleep(0.05)
        with connect("ws://127.0.0.1:%d/" % port) as ws:  # RFC 6455
            ws.send("héllo rfc6455")
            assert ws.recv(timeout=10) == "héllo rfc6455"
            ws.send(b"\x00\xffbinary" * 1000)
            assert ws.recv(timeout=10) == b"\x00\xffbinary" * 1000
        print("  standalone echo: RFC 6455 (websockets) ok")
        with rawws.Conn(port) as c:  # hixie-76
            c.send(HIXIE76_REQUEST)
            r = c.read_response(body=16)
            assert r.status == 101 and r.body == HIXIE76_ANSWER, r
            text = "hixie-76 ✓".encode()
            c.send(b"\x00" + text + b"\xff")
            assert c.read_exact(len(text) + 2) == b"\x00" + text + b"\xff"
            c.send(b"\xff\x00")  # the closing handshake
            assert c.read_to_eof() == b"\xff\x00"
        print("  standalone echo: hixie-76 (raw socket) ok")
    finally:
        server.terminate()
        assert server.wait(timeout=10) == 0, "echo server exited with %s" % server.returncode


class Echo(polysocket.tornado.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


async def tornado_drop_in() -> None:
    app = tornado.web.Application([("/ws", Echo)])
    port = free_port()
    server = app.listen(port, "127.0.0.1")
    try:
        ws = await tornado.websocket.websocket_connect("ws://127.0.0.1:%d/ws" % port)
        await ws.write_message("tornado ✓")
        assert await ws.read_message() == "tornado ✓"
        big = os.urandom(256 * 1024)
        await ws.write_message(big, binary=True)
        assert await ws.read_message() == big
        ws.close(1000, "done")
        assert await ws.read_message() is None
        assert ws.close_code == 1000, ws.close_code
        print("  Tornado drop-in: tornado.websocket client ok")
    finally:
        server.stop()


def main() -> None:
    print("smoke test on Python %s" % sys.version.split()[0])
    check_installed(sys.argv[1])
    standalone_echo()
    asyncio.run(tornado_drop_in())
    print("smoke test passed")


if __name__ == "__main__":
    main()
