"""The handler API (Tornado's WebSocketHandler) on the standalone server,
checked with the `websockets` and `websocket-client` libraries and raw
sockets (old drafts)."""

import asyncio
import contextlib
import json
import random
import socket
import threading
import time

import pytest
import websocket  # websocket-client
import websockets
from websockets.sync.client import connect as sync_connect

import rawws
from polysocket import WebSocketClosedError, WebSocketHandler


class Echo(WebSocketHandler):
    def check_origin(self, origin):
        return True

    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


class Recorder(WebSocketHandler):
    """Records every callback into the list passed as route kwargs."""

    def initialize(self, log):
        self.log = log
        self.log.append(("initialize",))

    def open(self, *args, **kwargs):
        self.log.append(("open", args, kwargs, self.request.path, self.request.remote_ip,
                         self.draft, self.get_argument("q", None)))
        self.write_message("welcome")

    def on_message(self, message):
        self.log.append(("message", message))
        if message == "close-me":
            self.close(4002, "asked")
        else:
            self.write_message(message, binary=isinstance(message, bytes))

    def on_ping(self, data):
        self.log.append(("ping", data))

    def on_pong(self, data):
        self.log.append(("pong", data))

    def on_close(self):
        self.log.append(("close", self.close_code, self.close_reason))


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def test_echo_text_binary_and_compression(serve):
    s = serve([(r"/.*", Echo)])

    async def run():
        async with websockets.connect(s.url("/anything")) as ws:
            assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
            for msg in ["hi", "ü€𝄞" * 1000, b"\x00\xff" * 40000, "", b""]:
                await ws.send(msg)
                assert await ws.recv() == msg

    asyncio.run(run())


def test_no_compression_option(serve):
    s = serve([(r"/", Echo)], compression=False)
    with sync_connect(s.url("/")) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        ws.send("x")
        assert ws.recv() == "x"


def test_callbacks_path_args_arguments_and_close_code(serve):
    log = []
    s = serve([(r"/room/(\w+)/(\d+)", Recorder, {"log": log})])
    ws = websocket.create_connection(s.url("/room/blue/7?q=hello"))
    assert ws.recv() == "welcome"
    ws.send("text")
    assert ws.recv() == "text"
    ws.send_binary(b"\x01\x02")
    assert ws.recv() == b"\x01\x02"
    ws.ping(b"pp")
    ws.send("sync")  # the ping was handled before this message
    assert ws.recv() == "sync"
    ws.close(status=4001, reason="bye")
    assert wait_for(lambda: log and log[-1][0] == "close")
    assert log[0] == ("initialize",)
    assert log[1] == ("open", ("blue", "7"), {}, "/room/blue/7", "127.0.0.1", "rfc6455", "hello")
    assert log[2:] == [("message", "text"), ("message", b"\x01\x02"), ("ping", b"pp"),
                       ("message", "sync"), ("close", 4001, "bye")]


def test_named_groups_become_kwargs(serve):
    log = []
    s = serve([(r"/u/(?P<user>\w+)", Recorder, {"log": log})])
    with sync_connect(s.url("/u/ann")) as ws:
        assert ws.recv() == "welcome"
    assert log[1][1:3] == ((), {"user": "ann"})


def test_server_close_with_code(serve):
    log = []
    s = serve([(r"/", Recorder, {"log": log})])
    with sync_connect(s.url("/")) as ws:
        assert ws.recv() == "welcome"
        ws.send("close-me")
        with pytest.raises(websockets.ConnectionClosed):
            ws.recv()
        assert (ws.close_code, ws.close_reason) == (4002, "asked")
    assert wait_for(lambda: log[-1][0] == "close")


def test_unmatched_path_is_404(serve):
    s = serve([(r"/only", Echo)])
    with pytest.raises(websockets.InvalidStatus) as e:
        sync_connect(s.url("/other"))
    assert e.value.response.status_code == 404


class Ordered(WebSocketHandler):
    """A coroutine per message with random delays: echoes must keep order."""

    async def open(self):
        await asyncio.sleep(0.05)
        self.ready = True

    async def on_message(self, message):
        assert self.ready
        await asyncio.sleep(random.random() * 0.003)
        await self.write_message(message)


def test_coroutines_are_awaited_in_order(serve):
    s = serve([(r"/", Ordered)])

    async def run():
        async with websockets.connect(s.url("/")) as ws:
            for i in range(100):
                await ws.send(str(i))  # sent before open() finished
            got = [await ws.recv() for _ in range(100)]
            assert got == [str(i) for i in range(100)]

    asyncio.run(run())


class Subprotocols(WebSocketHandler):
    def select_subprotocol(self, subprotocols):
        return "chat.v2" if "chat.v2" in subprotocols else None

    def open(self):
        self.write_message(self.selected_subprotocol or "none")

    def on_message(self, message):
        pass


def test_select_subprotocol(serve):
    s = serve([(r"/", Subprotocols)])
    with sync_connect(s.url("/"), subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.recv() == "chat.v2"
    with sync_connect(s.url("/")) as ws:
        assert ws.subprotocol is None
        assert ws.recv() == "none"


class DefaultOrigin(WebSocketHandler):
    def on_message(self, message):
        self.write_message(message)


def test_check_origin_default_is_same_origin_or_trusted(serve):
    s = serve([(r"/", DefaultOrigin)], settings={"trusted_origins": ["http://trusted.example"]})
    with sync_connect(s.url("/"), origin="http://127.0.0.1:%d" % s.port) as ws:
        ws.send("same")
        assert ws.recv() == "same"
    with sync_connect(s.url("/"), origin="http://trusted.example") as ws:
        ws.send("trusted")
        assert ws.recv() == "trusted"
    with sync_connect(s.url("/")) as ws:  # no Origin: not a browser
        ws.send("none")
        assert ws.recv() == "none"
    with pytest.raises(websockets.InvalidStatus) as e:
        sync_connect(s.url("/"), origin="http://evil.example")
    assert e.value.response.status_code == 403


class Broadcaster(WebSocketHandler):
    def open(self):
        self.join("room")
        self.write_message("joined")

    def on_message(self, message):
        if message == "all":
            n = self.application.broadcast_group("room", {"n": len(self.application.handlers)})
            self.write_message("sent to %d" % n)
        elif message == "list":
            n = self.application.broadcast(self.application.handlers, b"\x00binary", binary=True)
            self.write_message("sent to %d" % n)


def test_broadcast_and_groups(serve):
    s = serve([(r"/", Broadcaster)])
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(sync_connect(s.url("/"))) for _ in range(5)]
        for c in clients:
            assert c.recv() == "joined"
        clients[0].send("all")
        got = [json.loads(c.recv()) for c in clients]
        assert got == [{"n": 5}] * 5
        assert clients[0].recv() == "sent to 5"
        clients[2].send("list")
        assert [c.recv() for c in clients] == [b"\x00binary"] * 5
        assert clients[2].recv() == "sent to 5"


class WriteAfterClose(WebSocketHandler):
    result = None

    def on_message(self, message):
        self.close()
        try:
            self.write_message("late")
        except WebSocketClosedError:
            WriteAfterClose.result = "raised"


def test_write_after_close_raises(serve):
    s = serve([(r"/", WriteAfterClose)])
    with sync_connect(s.url("/")) as ws:
        ws.send("x")
        with pytest.raises(websockets.ConnectionClosedOK):
            ws.recv()
    assert WriteAfterClose.result == "raised"


def test_server_ping_interval_gets_pongs(serve):
    log = []
    serve_ = serve([(r"/", Recorder, {"log": log})], ping_interval=0.1, ping_timeout=5)
    with sync_connect(serve_.url("/")) as ws:
        assert ws.recv() == "welcome"
        # websockets answers pings while it waits for a message.
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)
    assert any(e[0] == "pong" for e in log), log


def test_plain_http_page(serve):
    s = serve([(r"/ws", Echo)], pages={"/": "<h1>hello</h1>", "/a.txt": ("text/plain", b"A")})
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := c.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"text/html" in data and data.endswith(b"<h1>hello</h1>")


@pytest.mark.parametrize("version", [13, 8, 7])
def test_hybi_versions_raw(serve, version):
    s = serve([(r"/.*", Echo)])
    with rawws.open_conn(s.port, version=version) as c:
        c.send_frame(rawws.OP_TEXT, b"raw hybi")
        assert c.read_message() == (rawws.OP_TEXT, b"raw hybi")


def test_hixie76_raw(serve):
    s = serve([(r"/.*", Echo)])
    with rawws.Conn(s.port) as c:
        c.send(b"GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\nSec-WebSocket-Protocol: sample\r\n"
               b"Upgrade: WebSocket\r\nSec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
               b"Origin: http://example.com\r\n\r\n^n:ds[4U")
        r = c.read_response(body=16)
        assert r.status == 101 and r.body == b"8jKS'y:G*Co,Wxa-"
        c.send(b"\x00hixie-76\xff")
        assert c.read_exact(10) == b"\x00hixie-76\xff"


def test_hixie75_raw(serve):
    log = []
    s = serve([(r"/.*", Recorder, {"log": log})])
    with rawws.Conn(s.port) as c:
        c.send(b"GET /old HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
               b"Host: example.com\r\nOrigin: http://example.com\r\n\r\n")
        r = c.read_response()
        assert r.status == 101
        assert c.read_exact(9) == b"\x00welcome\xff"
        c.send(b"\x00hixie-75\xff")
        assert c.read_exact(10) == b"\x00hixie-75\xff"
    assert wait_for(lambda: log[-1][0] == "close")
    assert log[1][5] == "hixie-75"


class Types(WebSocketHandler):
    def on_message(self, message):
        big = "€" * 5000
        self.write_message({"k": [1, 2]})
        self.write_message(big)
        self.write_message(big.encode(), binary=True)
        self.write_message(memoryview(b"m" * 10000), binary=True)
        self.write_message(bytearray(b"ba"), binary=True)
        self.write_message(b"utf-8 bytes as text")
        try:
            self.write_message(b"\xff", binary=False)
        except ValueError:
            self.write_message("ValueError")
        try:
            self.write_message(42)
        except TypeError:
            self.write_message("TypeError")


def test_write_message_types(serve):
    s = serve([(r"/", Types)])
    with sync_connect(s.url("/")) as ws:
        ws.send("go")
        got = [ws.recv() for _ in range(8)]
    assert got == ['{"k": [1, 2]}', "€" * 5000, ("€" * 5000).encode(), b"m" * 10000, b"ba",
                   "utf-8 bytes as text", "ValueError", "TypeError"]


class Later(WebSocketHandler):
    """Answers from asyncio callbacks scheduled by a plain handler."""

    def on_message(self, message):
        loop = asyncio.get_running_loop()
        loop.call_soon(self.write_message, "soon:" + message)
        loop.call_later(0.05, self.write_message, "later:" + message)


def test_callbacks_scheduled_by_a_handler_run_promptly(serve):
    s = serve([(r"/", Later)])
    # The mode under test is the one asked for: inline on polysocket's loop.
    assert s.server._inline == (s.mode == "inline")
    with sync_connect(s.url()) as ws:
        for i in range(3):
            start = time.monotonic()
            ws.send(str(i))
            assert ws.recv(timeout=5) == "soon:%d" % i
            assert ws.recv(timeout=5) == "later:%d" % i
            # Nothing else wakes the loop here: the runtime hands control
            # back to asyncio after a handler ran.
            assert time.monotonic() - start < 1.0
