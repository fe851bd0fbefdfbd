"""polysocket: every WebSocket draft, from hixie-75 to RFC 6455, in Rust.

The standalone server (``Server``, ``serve``) runs I/O, handshakes and framing
in a Rust runtime and calls Tornado-style handlers (``WebSocketHandler``) on
the asyncio loop.
"""

from ._native import __version__
from .handler import Request, WebSocketClosedError, WebSocketHandler
from .server import Server, serve

__all__ = ["__version__", "Request", "Server", "WebSocketClosedError", "WebSocketHandler",
           "serve"]
