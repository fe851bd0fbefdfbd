"""Type stubs of polysocket._native (the Rust side): the sans-I/O engine."""

from typing import Final

# The standalone server's classes (ServerOptions, NativeServer, Reactor, Connection, Done).
from ._native_server import *

__version__: Final[str]

TEXT: Final[int]
BINARY: Final[int]
CLOSE: Final[int]
PING: Final[int]
PONG: Final[int]
FAILED: Final[int]

class ClosedError(ConnectionError):
    """The connection is closing or closed: nothing more can be sent."""

class HandshakeError(ValueError):
    """args: (message, status, headers)."""

Event = tuple[int, object]

class Engine:
    def receive(self, data: bytes | bytearray) -> list[Event]: ...
    def send(self, data: str | bytes, binary: bool = False) -> None: ...
    def ping(self, data: str | bytes) -> None: ...
    def pong(self, data: str | bytes) -> None: ...
    def close(self, code: int | None = None, reason: str | None = None) -> None: ...
    def take_output(self) -> bytes: ...
    @property
    def has_output(self) -> bool: ...
    @property
    def state(self) -> str: ...
    @property
    def draft(self) -> str: ...
    @property
    def subprotocol(self) -> str | None: ...
    @property
    def extension(self) -> str | None: ...
    @property
    def has_ping(self) -> bool: ...
    @property
    def has_binary(self) -> bool: ...
    @property
    def message_bytes_in(self) -> int: ...
    @property
    def message_bytes_out(self) -> int: ...
    @property
    def wire_bytes_in(self) -> int: ...
    @property
    def wire_bytes_out(self) -> int: ...

class ServerHandshake:
    def __init__(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        *,
        max_message_size: int = ...,
        compression_level: int | None = None,
        extensions: list[str] | None = None,
        drafts: list[str] | None = None,
    ) -> None: ...
    def feed(self, data: bytes = b"") -> bool: ...
    @property
    def draft(self) -> str: ...
    @property
    def subprotocols(self) -> list[str]: ...
    @property
    def origin(self) -> str | None: ...
    def accept(
        self,
        subprotocol: str | None = None,
        extra_headers: list[tuple[str, str]] = ...,
        secure: bool = False,
    ) -> tuple[bytes, Engine]: ...

class ClientHandshake:
    def __init__(
        self,
        draft: str,
        host: str,
        resource: str,
        *,
        secure: bool = False,
        origin: str | None = None,
        subprotocols: list[str] = ...,
        extra_headers: list[tuple[str, str]] = ...,
        max_message_size: int = ...,
        compression_level: int | None = None,
        extensions: list[str] | None = None,
        auto_pong: bool = True,
    ) -> None: ...
    def request_bytes(self) -> bytes: ...
    def feed(self, data: bytes) -> Engine | None: ...
    @property
    def response_status(self) -> int | None: ...
    @property
    def response_headers(self) -> list[tuple[str, str]] | None: ...
