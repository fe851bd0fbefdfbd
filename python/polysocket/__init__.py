"""polysocket: every WebSocket draft, from hixie-75 to RFC 6455, in Rust."""

from ._native import __version__

__all__ = ["__version__"]
