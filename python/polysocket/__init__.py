"""polysocket: every WebSocket draft, from hixie-75 to RFC 6455, in Rust.

* ``Server`` / ``serve``: the standalone server. I/O, handshakes and framing
  run in a Rust runtime; Tornado-style handlers (``WebSocketHandler``) run on
  the asyncio loop.
* ``polysocket.tornado``: a drop-in for ``tornado.websocket`` (handler and
  client) on polysocket's engine, accepting every draft.
* ``connect``: an asyncio client for every draft.
"""

from ._native import __version__
from .client import ClientConnection, ConnectionClosed, HandshakeError, connect
from .handler import Request, WebSocketClosedError, WebSocketHandler
from .server import Server, serve

__all__ = [
    "ClientConnection",
    "ConnectionClosed",
    "HandshakeError",
    "Request",
    "Server",
    "WebSocketClosedError",
    "WebSocketHandler",
    "__version__",
    "connect",
    "serve",
]
