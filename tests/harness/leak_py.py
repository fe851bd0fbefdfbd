"""The Python half of scripts/leak-check.sh: the standalone server and the
Tornado drop-in in one process, driven over real sockets through every
event kind and error path for N rounds; after a warm-up nothing may grow
from round to round:

* ``sys.getallocatedblocks()`` and ``len(gc.get_objects())`` (after
  ``gc.collect()``) stay flat;
* a tracemalloc diff over the measured rounds has no trace in polysocket's
  Python files (or this harness, where the extension's objects are made)
  that grows with every round;
* every handler object is dead (weak references) once its connection has
  closed.

    python leak_py.py [--warmup 5] [--rounds 20]

Exit status 1 naming what grows. ``LEAK_PY_INJECT=1`` keeps every handler
in a list, to show that the check fails when something leaks.
"""

import argparse
import array
import logging
import asyncio
import gc
import os
import socket
import sys
import tracemalloc
import weakref

import polysocket
import tornado.web
from polysocket.tornado import WebSocketClosedError as TornadoClosed
from polysocket.tornado import WebSocketHandler as TornadoHandler
from tornado.httpserver import HTTPServer
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

HERE = os.path.dirname(os.path.abspath(__file__))
POLYSOCKET_DIR = os.path.dirname(polysocket.__file__)
RUNNER = os.path.join(POLYSOCKET_DIR, "loop.py")  # polysocket.run(): under every trace
ALIVE = weakref.WeakSet()  # every handler made; must be empty between rounds
INJECTED = []  # LEAK_PY_INJECT=1: the leak the check must catch
OUTCOMES = {"closed_error": 0, "logged": 0}
LIMIT = 64 * 1024  # max_message_size of both servers
HIXIE76 = (b"GET /echo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\nUpgrade: WebSocket\r\n"
           b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nOrigin: http://example.com\r\n\r\n"
           b"^n:ds[4U")


class Discard(logging.Handler):
    """Formats every record (tracebacks included, as a real handler
    would) and counts it; the expected errors would only be noise."""

    def emit(self, record):
        self.format(record)
        OUTCOMES["logged"] += 1


class Behaviour:
    """What both servers' handlers do, chosen by path and message."""

    def _made(self):
        ALIVE.add(self)
        if os.environ.get("LEAK_PY_INJECT") == "1":
            INJECTED.append(self)

    def check_origin(self, origin):
        return True

    def open(self, *args):
        self._made()
        if self._query() == "raise-open":
            raise RuntimeError("raised in open")

    async def _slow(self, message):
        if message == "cancel":
            asyncio.current_task().cancel()
        await asyncio.sleep(0.01)
        self.write_message(message)

    def on_message(self, message):
        if message == "raise":
            raise ValueError("raised in on_message")
        if message in ("slow", "cancel"):
            return self._slow(message)
        if message == "close":
            self.close(4001, "server closes")
            return None
        self.write_message(message, binary=isinstance(message, bytes))
        return None

    def on_close(self):
        try:
            self.write_message("too late")
        except (polysocket.WebSocketClosedError, TornadoClosed):
            OUTCOMES["closed_error"] += 1
        if self._query() == "raise-close":
            raise RuntimeError("raised in on_close")


class StandaloneHandler(Behaviour, polysocket.WebSocketHandler):
    def _query(self):
        return self.request.query


class TornadoLeakHandler(Behaviour, TornadoHandler):
    def _query(self):
        return self.request.query


async def expect_close(ws, code=None):
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except ConnectionClosed as e:
        got = e.rcvd.code if e.rcvd else None
        assert code is None or got == code, (code, got)


async def raw(port, request, read=True):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10) if read else b""
    return reader, writer, head


def vanish(transport):
    """Reset the connection: no close frame, no FIN."""
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    transport.abort()


async def one_round(port):
    url = "ws://127.0.0.1:%d" % port
    async with connect(url + "/echo") as ws:  # permessage-deflate offered
        await ws.send("text ✓")
        assert await ws.recv() == "text ✓"
        await ws.send(b"\x00binary")
        assert await ws.recv() == b"\x00binary"
        await (await ws.ping(b"p"))
        await ws.send("slow")
        assert await ws.recv() == "slow"
    async with connect(url + "/echo", compression=None) as ws:
        await ws.send("close")
        await expect_close(ws, 4001)
    async with connect(url + "/echo") as ws:
        await ws.close(4321, "client goes")
    async with connect(url + "/echo") as ws:
        await ws.send("raise")
        await expect_close(ws, 1011)
    async with connect(url + "/echo") as ws:
        await ws.send("cancel")
        await expect_close(ws, 1011)
    async with connect(url + "/echo?raise-open") as ws:
        await expect_close(ws, 1011)
    async with connect(url + "/echo?raise-close") as ws:
        await ws.send("x")
        await ws.recv()
    async with connect(url + "/echo", max_size=None) as ws:  # past max_message_size
        await ws.send(b"\x00" * (LIMIT + 1))
        await expect_close(ws, 1009)
    # A coroutine running when its client vanishes; a client gone mid-frame.
    ws = await connect(url + "/echo")
    await ws.send("slow")
    vanish(ws.transport)
    _, writer, head = await raw(port, HIXIE76)
    assert b" 101 " in head, head
    writer.write(b"\x00half a hixie frame")
    vanish(writer.transport)
    # Rejected handshakes: unknown path, unsupported version.
    for request in (b"GET /nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                    b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 99\r\n\r\n"):
        _, writer, head = await raw(port, request)
        assert head.split(b" ")[1][:1] == b"4", head
        writer.close()


async def settle(expect_none_alive=True):
    """Let every connection finish closing, then collect."""
    for _ in range(200):
        await asyncio.sleep(0.02)
        gc.collect()
        if not ALIVE:
            return
    if expect_none_alive and not INJECTED:
        raise SystemExit("leak-check python: %d handler objects alive after their connections "
                         "closed: %r" % (len(ALIVE), list(ALIVE)[:5]))


def ours(traceback):
    """Allocated through polysocket's Python files (the extension's objects
    are made under them), or by this harness's own code."""
    return (any(f.filename.startswith(POLYSOCKET_DIR) and f.filename != RUNNER
                for f in traceback[:-1]) or traceback[-1].filename.startswith(POLYSOCKET_DIR)
            or traceback[-1].filename == os.path.abspath(__file__))


async def main(a):
    standalone = polysocket.Server([(r"/echo", StandaloneHandler)], "127.0.0.1", 0,
                                   max_message_size=LIMIT, max_messages_per_minute=0)
    standalone.start()
    app = tornado.web.Application([(r"/echo", TornadoLeakHandler)],
                                  websocket_max_message_size=LIMIT)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    http = HTTPServer(app)
    http.add_sockets([sock])
    ports = {"standalone": standalone.port, "tornado": sock.getsockname()[1]}

    async def round_all():
        for port in ports.values():
            await one_round(port)
        await settle()

    for _ in range(a.warmup):
        await round_all()
    gc.collect()
    tracemalloc.start(10)
    # Preallocated: the measurements themselves must not grow per round.
    blocks, objects = array.array("q", [0] * a.rounds), array.array("q", [0] * a.rounds)
    half = a.rounds // 2
    for i in range(a.rounds):
        if i == half:
            first = tracemalloc.take_snapshot()
        await round_all()
        gc.collect()
        blocks[i] = sys.getallocatedblocks()
        objects[i] = len(gc.get_objects())
    last = tracemalloc.take_snapshot()
    tracemalloc.stop()
    http.stop()
    await standalone.stop()

    failures = []
    if INJECTED:
        failures.append("%d handler objects kept alive after their connections closed"
                        % len(ALIVE))
    # Growth per round, over the second half against the first (noise from
    # freelists and caches settles; a leak keeps adding).
    for name, series, limit in (("sys.getallocatedblocks()", blocks, a.max_blocks),
                                ("len(gc.get_objects())", objects, a.max_objects)):
        # From the first measurement after the snapshot (which itself holds blocks).
        per_round = (series[-1] - series[half]) / (len(series) - half - 1)
        print("python: %s per round after warm-up: %s -> %s (%+.1f per round over the last %d)"
              % (name, series[0], series[-1], per_round, len(series) - half))
        if per_round > limit:
            failures.append("%s grows by %.1f per round (limit %d): %s"
                            % (name, per_round, limit, list(series)))
    # Traces that gained a block per round over the second half: a state
    # that comes and goes within a round is the same at both snapshots.
    diff = last.compare_to(first, "traceback")
    growing = [s for s in diff if s.count_diff >= a.rounds - half and ours(s.traceback)]
    for top in sorted(diff, key=lambda s: -s.count_diff)[:a.show]:
        print("python: tracemalloc, growth over the last %d rounds: %+d blocks at %s"
              % (a.rounds - half, top.count_diff, " < ".join(str(f) for f in top.traceback[::-1][:4])))
    for stat in growing[:10]:
        failures.append("tracemalloc: +%d blocks (+%d B) over %d rounds at\n    %s"
                        % (stat.count_diff, stat.size_diff, a.rounds - half,
                           "\n    ".join(str(f) for f in stat.traceback.format())))
    print("python: %d rounds (+%d warm-up) of every event on both servers; "
          "write_message after close raised WebSocketClosedError %d times, %d errors logged"
          % (a.rounds, a.warmup, OUTCOMES["closed_error"], OUTCOMES["logged"]))
    if failures:
        print("\n".join(failures))
        raise SystemExit("leak-check python: something grows per round (above)")
    print("python: nothing grows; every handler freed after its connection closed")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--max-blocks", type=int, default=60, help="allocated blocks per round")
    ap.add_argument("--show", type=int, default=1, help="largest tracemalloc growths shown")
    ap.add_argument("--max-objects", type=int, default=5, help="gc objects per round")
    logging.basicConfig(level=logging.WARNING, handlers=[Discard()])
    polysocket.run(main(ap.parse_args()))
