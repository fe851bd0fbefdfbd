"""Fixtures for the standalone server's tests: a ``polysocket.Server`` on a
free port of 127.0.0.1, running its asyncio loop in a thread of the test
process, talked to over real sockets by independent clients."""

import asyncio
import os
import socket
import sys
import threading

import pytest

import polysocket

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# tests/harness/rawws.py: a raw-socket client for what real clients never send.
sys.path.insert(0, os.path.join(REPO, "tests", "harness"))


class ServerThread:
    """A Server whose loop runs in a background thread: polysocket's loop
    (``inline``: the runtime on the loop's thread) or asyncio's own
    (``threaded``: the runtime on its threads, events queued)."""

    def __init__(self, routes, mode="inline", **options):
        self.server = polysocket.Server(routes, "127.0.0.1", 0, **options)
        self.mode = mode
        self.loop = None
        self.error = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        async def main():
            self.loop = asyncio.get_running_loop()
            try:
                self.server.start()
            finally:
                self._ready.set()
            await self.server.serve_forever()

        try:
            if self.mode == "inline":
                polysocket.run(main())
            else:
                asyncio.run(main())
        except BaseException as e:  # reported by start()/stop()
            self.error = e
            self._ready.set()

    def start(self):
        self._thread.start()
        self._ready.wait(10)
        if self.error:
            raise self.error
        return self

    @property
    def port(self):
        return self.server.port

    def url(self, path="/"):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def call(self, fn, *args):
        """Run fn(*args) on the server's loop and return its result."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stop(self):
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.server.request_stop)
            self._thread.join(30)
        assert not self._thread.is_alive(), "the server did not stop"
        if self.error:
            raise self.error


@pytest.fixture(params=["inline", "threaded"])
def serve(request):
    """serve(routes, **options) -> a started ServerThread, stopped after the
    test; every test runs with the server in both modes."""
    started = []

    def start(routes, **options):
        s = ServerThread(routes, request.param, **options).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
