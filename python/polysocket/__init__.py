"""polysocket: every WebSocket draft, from hixie-75 to RFC 6455, in Rust.

* `polysocket.tornado`: a drop-in for ``tornado.websocket`` (handler and
  client) on polysocket's engine, accepting every draft.
* `polysocket.connect`: an asyncio client for every draft.
"""

from ._native import __version__
from .client import ClientConnection, ConnectionClosed, HandshakeError, connect

__all__ = ["ClientConnection", "ConnectionClosed", "HandshakeError", "__version__", "connect"]
