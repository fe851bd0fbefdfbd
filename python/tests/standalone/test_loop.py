"""polysocket's asyncio loop (polysocket.run / new_event_loop) is a plain
asyncio loop for everything else: executors, subprocesses, timers, other
servers (a Tornado application with the drop-in handler) and clients, next
to a standalone server running inline on it."""

import asyncio
import sys
import time

import tornado.web
import websockets

import polysocket
import polysocket.tornado
from conftest import free_port


class TornadoEcho(polysocket.tornado.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message)


class Echo(polysocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message)


def test_asyncio_and_tornado_run_on_polysocket_loop():
    tornado_port, port = free_port(), free_port()
    seen = {}

    async def main():
        loop = asyncio.get_running_loop()
        assert isinstance(loop, polysocket.EventLoop)
        tornado.web.Application([(r"/t", TornadoEcho)]).listen(tornado_port, "127.0.0.1")
        server = polysocket.Server([(r"/p", Echo)], "127.0.0.1", port).start()
        seen["inline"] = server._inline
        # A worker thread's result comes back through the loop's self-pipe.
        seen["executor"] = await loop.run_in_executor(None, lambda: (time.sleep(0.05), 42)[1])
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print('hi')", stdout=asyncio.subprocess.PIPE)
        seen["subprocess"] = (await proc.communicate())[0].strip()
        start = time.monotonic()
        await asyncio.sleep(0.1)
        seen["sleep"] = time.monotonic() - start
        for name, url in (("tornado", "ws://127.0.0.1:%d/t" % tornado_port),
                          ("standalone", "ws://127.0.0.1:%d/p" % port)):
            async with websockets.connect(url) as ws:
                for i in range(50):
                    await ws.send("m%d" % i)
                    assert await ws.recv() == "m%d" % i
            seen[name] = True
        old = await polysocket.connect("ws://127.0.0.1:%d/t" % tornado_port, draft="hixie-76")
        await old.send("from 2010")
        seen["hixie-76"] = await old.recv()
        await old.close()
        await server.stop()

    polysocket.run(main())
    assert seen["inline"] is True
    assert seen["executor"] == 42
    assert seen["subprocess"] == b"hi"
    assert 0.09 < seen["sleep"] < 1.0
    assert seen["tornado"] and seen["standalone"]
    assert seen["hixie-76"] == "from 2010"


class Reenter(polysocket.WebSocketHandler):
    """Runs the reactor's select from inside a handler (as a nested event
    loop would): refused with a clear error, and the outer loop goes on."""

    def on_message(self, message):
        try:
            asyncio.get_running_loop().reactor.select(0)
            self.write_message("no error")
        except RuntimeError as e:
            self.write_message(str(e))


def test_reentered_select_is_refused_and_the_loop_goes_on():
    port = free_port()
    seen = {}

    async def main():
        loop = asyncio.get_running_loop()
        server = polysocket.Server([(r"/", Reenter)], "127.0.0.1", port).start()
        async with websockets.connect("ws://127.0.0.1:%d/" % port) as ws:
            await ws.send("x")
            seen["error"] = await ws.recv()
            # The outer select still releases the GIL while it waits: a
            # worker thread's result (which needs the GIL) comes back.
            seen["executor"] = await asyncio.wait_for(
                loop.run_in_executor(None, lambda: (time.sleep(0.05), 42)[1]), 5)
            await ws.send("y")
            seen["again"] = await ws.recv()
        await server.stop()

    polysocket.run(main())
    assert "re-entered" in seen["error"] and "nested event loop" in seen["error"], seen
    assert seen["executor"] == 42
    assert "re-entered" in seen["again"]
