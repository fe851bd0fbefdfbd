"""`connect`: an asyncio WebSocket client for every draft, hixie-75 to RFC 6455.

::

    ws = await polysocket.connect("ws://127.0.0.1:8888/chat", draft="hixie-76")
    await ws.send("hello")
    print(await ws.recv())
    await ws.close()

The handshake and the frames are polysocket's engine; the socket is a Tornado
`~tornado.iostream.IOStream` (Tornado's IOLoop runs on asyncio, so this works
in any asyncio program).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any, Sequence
from urllib.parse import urlsplit

from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpclient import TCPClient

from . import _native

__all__ = ["ClientConnection", "ConnectionClosed", "HandshakeError", "connect"]

#: The handshake was refused or invalid: ``args`` is ``(message, status,
#: headers)`` (status 0 when no HTTP answer arrived).
HandshakeError = _native.HandshakeError

_DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
_READ_SIZE = 1 << 20


class ConnectionClosed(ConnectionError):
    """The connection is closed: nothing can be sent any more."""


async def connect(
    url: str,
    *,
    draft: str = "rfc6455",
    subprotocols: Sequence[str] = (),
    origin: str | None = None,
    headers: Sequence[tuple[str, str]] | dict[str, str] = (),
    compression: bool = True,
    compression_level: int = 6,
    extensions: Sequence[str] | None = None,
    max_message_size: int = _DEFAULT_MAX_MESSAGE_SIZE,
    ssl_options: ssl.SSLContext | None = None,
    connect_timeout: float | None = 10.0,
) -> ClientConnection:
    """Open a WebSocket connection speaking ``draft``.

    ``draft`` is any draft name polysocket knows: ``"hixie-75"``,
    ``"hixie-76"`` (= ``"hybi-00"``), ``"hybi-01"`` ... ``"hybi-17"``,
    ``"rfc6455"`` (or a ``Sec-WebSocket-Version`` number such as ``"8"``).
    ``compression`` offers every compression extension the draft has
    (permessage-deflate from hybi-07, deflate-frame and deflate-stream on
    hybi-04..08); ``extensions`` narrows the offer to the names given
    (``"permessage-deflate"``, ``"deflate-frame"``, ``"deflate-stream"``). ``wss://`` URLs use ``ssl_options`` (default: a verifying
    context). Raises `HandshakeError` if the server refuses or answers
    wrongly, `ValueError` for a bad URL or draft name.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if isinstance(headers, dict):
        headers = list(headers.items())
    handshake = _native.ClientHandshake(
        draft,
        parts.netloc.rsplit("@", 1)[-1],
        resource,
        secure=secure,
        origin=origin,
        subprotocols=list(subprotocols),
        extra_headers=list(headers),
        max_message_size=max_message_size,
        compression_level=compression_level if compression else None,
        extensions=None if extensions is None else list(extensions),
    )
    if secure and ssl_options is None:
        ssl_options = ssl.create_default_context()
    stream = await TCPClient().connect(
        parts.hostname,
        port,
        ssl_options=ssl_options if secure else None,
        timeout=connect_timeout,
    )
    try:
        stream.set_nodelay(True)
        await stream.write(handshake.request_bytes())
        engine = None
        while engine is None:
            engine = handshake.feed(await stream.read_bytes(_READ_SIZE, partial=True))
    except StreamClosedError:
        stream.close()
        raise HandshakeError("the server closed the connection during the handshake", 0, [])
    except BaseException:
        stream.close()
        raise
    return ClientConnection(stream, engine, handshake.response_headers or [])


class ClientConnection:
    """An open client connection (see `connect`). Iterating it yields the
    received messages until the connection closes."""

    def __init__(
        self, stream: IOStream, engine: _native.Engine, response_headers: list[tuple[str, str]]
    ) -> None:
        self._stream = stream
        self._engine = engine
        #: The handshake answer's headers, in order.
        self.response_headers = response_headers
        #: The code and reason of the peer's close frame (None: none yet).
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._pongs: collections.deque[bytes] = collections.deque()
        self._arrived = asyncio.Event()
        #: Set when the application took a message or stopped waiting for
        #: one (see `_handed_over`).
        self._taken = asyncio.Event()
        self._read_on = 0
        self._closed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read_loop())

    @property
    def draft(self) -> str:
        """The draft spoken (``"rfc6455"``, ``"hybi-08"``, ``"hixie-76"``...)."""
        return self._engine.draft

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose, if any."""
        return self._engine.subprotocol

    @property
    def extension(self) -> str | None:
        """The compression extension in force, if any."""
        return self._engine.extension

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def _read_loop(self) -> None:
        try:
            data = b""  # frames that followed the answer are in the engine
            while True:
                for kind, payload in self._engine.receive(data):
                    if kind == _native.TEXT or kind == _native.BINARY:
                        self._messages.append(payload)
                        self._arrived.set()
                        await self._handed_over()
                    elif kind == _native.PONG:
                        self._pongs.append(payload)
                        self._arrived.set()
                    elif kind == _native.CLOSE:
                        self.close_code, self.close_reason = payload
                    elif kind == _native.FAILED:
                        self.close_code = None
                self._arrived.set()
                await self._flush()
                if self._engine.state == "closed":
                    break
                data = await self._stream.read_bytes(_READ_SIZE, partial=True)
        except (StreamClosedError, ConnectionClosed):
            pass
        finally:
            self._stream.close()
            self._closed.set()
            self._arrived.set()

    async def _handed_over(self) -> None:
        """Decode nothing further while a received message waits for the
        application (a queue of one, as TCP's flow control would have it):
        what it sends in answer then goes out before any failure a later
        frame causes. `close` and a `ping` awaiting its pong read on."""
        while self._messages and not self._read_on:
            self._taken.clear()
            await self._flush()
            if self._messages and not self._read_on:
                await self._taken.wait()

    async def _flush(self) -> None:
        data = self._engine.take_output()
        if data:
            try:
                if isinstance(data, list):  # large payloads, each from itself
                    for piece in data[:-1]:
                        self._stream.write(piece)
                    data = data[-1]
                await self._stream.write(data)
            except StreamClosedError:
                raise ConnectionClosed("the connection is closed") from None

    async def send(self, message: str | bytes) -> None:
        """Send a text (`str`) or binary (`bytes`) message; waits until it
        is written. Binary needs hybi-01 or later."""
        try:
            self._engine.send(message, not isinstance(message, str))
        except _native.ClosedError as e:
            raise ConnectionClosed(str(e)) from None
        await self._flush()

    async def recv(self) -> str | bytes | None:
        """The next message, or None once the connection is closed."""
        while not self._messages:
            if self._closed.is_set():
                return None
            self._arrived.clear()
            await self._arrived.wait()
        self._taken.set()
        return self._messages.popleft()

    async def ping(self, data: bytes | str = b"", wait: bool = True) -> bytes | None:
        """Send a ping (hybi-01 on); with ``wait``, return the next pong's payload
        (None if the connection closes first)."""
        self._pongs.clear()
        try:
            self._engine.ping(data)
        except _native.ClosedError as e:
            raise ConnectionClosed(str(e)) from None
        await self._flush()
        if not wait:
            return None
        self._read_on += 1  # the pong may come behind messages not taken yet
        self._taken.set()
        try:
            while not self._pongs:
                if self._closed.is_set():
                    return None
                self._arrived.clear()
                await self._arrived.wait()
        finally:
            self._read_on -= 1
        return self._pongs.popleft()

    async def close(self, code: int | None = 1000, reason: str | None = None, timeout: float = 5.0) -> None:
        """Start the close handshake and wait (up to ``timeout``) for the
        peer's close frame; then the TCP connection is closed."""
        self._read_on += 1  # the peer's close may come behind messages not taken
        self._taken.set()
        if self._engine.state == "open":
            self._engine.close(code, reason)
            try:
                await self._flush()
            except ConnectionClosed:
                pass
            if self._engine.state == "closed":
                self._stream.close()  # hixie-75: closing TCP is the close
        try:
            await asyncio.wait_for(self._closed.wait(), timeout)
        except asyncio.TimeoutError:
            self._stream.close()
            await self._closed.wait()

    def __aiter__(self) -> ClientConnection:
        return self

    async def __anext__(self) -> str | bytes:
        message = await self.recv()
        if message is None:
            raise StopAsyncIteration
        return message

    async def __aenter__(self) -> ClientConnection:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
