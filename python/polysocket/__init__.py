"""polysocket: every WebSocket draft, from hixie-75 to RFC 6455, in Rust.

* ``Server`` / ``serve``: the standalone server. I/O, handshakes and framing
  run in a Rust runtime; Tornado-style handlers (``WebSocketHandler``) run on
  the asyncio loop.
* ``run`` / ``new_event_loop``: polysocket's asyncio loop, on which a
  server's I/O runs on the loop's own thread (``serve`` uses it).
* ``polysocket.tornado``: a drop-in for ``tornado.websocket`` (handler and
  client) on polysocket's engine, accepting every draft.
* ``connect``: an asyncio client for every draft.
"""

from ._native import __version__
from .client import ClientConnection, ConnectionClosed, HandshakeError, connect
from .handler import Request, WebSocketClosedError, WebSocketHandler
from .loop import EventLoop, new_event_loop, run
from .server import Server, serve

__all__ = [
    "ClientConnection",
    "ConnectionClosed",
    "EventLoop",
    "HandshakeError",
    "Request",
    "Server",
    "WebSocketClosedError",
    "WebSocketHandler",
    "__version__",
    "connect",
    "new_event_loop",
    "run",
    "serve",
]
