"""Shared setup of the Tornado drop-in tests: a Tornado application with
polysocket.tornado handlers, served on a free 127.0.0.1 port by an IOLoop
in a background thread, so that clients of every kind (polysocket.connect,
websockets, websocket-client, raw sockets, Tornado's own client) can run in
the test's thread."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from typing import Any, Iterator

import pytest
import tornado.web
import tornado.websocket
from tornado.ioloop import IOLoop

from polysocket.tornado import WebSocketHandler

# Tornado's test cases fail on any unexpected log line; the access log
# writes one INFO line per request.
logging.getLogger("tornado.access").setLevel(logging.CRITICAL)


class EchoHandler(WebSocketHandler):
    """Echoes messages with their type. ``info`` answers what was
    negotiated: draft, extension, subprotocol."""

    def initialize(self, compression: dict[str, Any] | None = None) -> None:
        self.compression = compression

    def get_compression_options(self) -> dict[str, Any] | None:
        return self.compression

    def check_origin(self, origin: str) -> bool:
        return True

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return "chat" if "chat" in subprotocols else None

    def open(self) -> None:
        self.set_nodelay(True)

    def on_message(self, message: str | bytes) -> None:
        if message == "info":
            conn = self.ws_connection
            message = f"{self.draft} {conn.extension} {self.selected_subprotocol}"
        elif message == "close":
            self.close(4001, "asked to")
            return
        self.write_message(message, binary=isinstance(message, bytes))


class FailingHandler(EchoHandler):
    """Raises in on_message: the error must be logged and close 1011."""

    def on_message(self, message: str | bytes) -> None:
        raise RuntimeError(f"handler failed on {message!r}")


class Rfc6455OnlyHandler(EchoHandler):
    allowed_drafts = ["rfc6455"]


class MisconfiguredHandler(EchoHandler):
    allowed_drafts = ["hybi-99"]


class PureTornadoEcho(tornado.websocket.WebSocketHandler):
    """Tornado's own handler, for the drop-in client to talk to."""

    def get_compression_options(self) -> dict[str, Any]:
        return {}

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message, binary=isinstance(message, bytes))


def make_app() -> tornado.web.Application:
    return tornado.web.Application(
        [
            ("/echo", EchoHandler),
            ("/deflate", EchoHandler, {"compression": {}}),
            ("/deflate9", EchoHandler, {"compression": {"compression_level": 9}}),
            ("/fail", FailingHandler),
            ("/rfc6455", Rfc6455OnlyHandler),
            ("/misconfigured", MisconfiguredHandler),
            ("/pure", PureTornadoEcho),
        ],
        websocket_max_message_size=4 * 1024 * 1024,
    )


class Server:
    def __init__(self, ssl_options: ssl.SSLContext | None = None) -> None:
        self.ssl_options = ssl_options
        self.port = 0
        self.loop: IOLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the Tornado server did not start"

    def _run(self) -> None:
        async def main() -> None:
            server = make_app().listen(0, "127.0.0.1", ssl_options=self.ssl_options)
            self.port = next(iter(server._sockets.values())).getsockname()[1]
            self.loop = IOLoop.current()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            server.stop()

        asyncio.run(main())

    def url(self, path: str) -> str:
        scheme = "wss" if self.ssl_options else "ws"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        assert self.loop is not None
        self.loop.add_callback(self._stop.set)
        self._thread.join(10)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for 127.0.0.1."""
    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


@pytest.fixture(scope="module")
def tls_server(tls) -> Iterator[Server]:
    s = Server(ssl_options=tls[0])
    yield s
    s.stop()
