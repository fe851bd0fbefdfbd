"""uvicorn's WebSocket layer on polysocket's engine: every draft, from
hixie-75 to RFC 6455 with its compression extensions, for ASGI apps
(FastAPI, Starlette, Django Channels)::

    uvicorn app:app --ws polysocket.asgi:WebSocketProtocol

The class follows the contract of uvicorn's own implementations
(``uvicorn/protocols/websockets/``): uvicorn's HTTP layer sees the upgrade,
builds it with ``config``, ``server_state`` and ``app_state``, hands it the
transport and the request head; it registers in the server state, stops
gracefully on ``shutdown()`` and honours ``ws_max_size``, ``ws_max_queue``,
``ws_ping_interval``, ``ws_ping_timeout`` and ``ws_per_message_deflate``.
The handshake, framing, UTF-8 checks, compression and the close handshake
happen in the engine; this module moves bytes and ASGI events (the ASGI
``www`` spec 2.5). See docs/ASGI.md.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sys
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)

from . import _native

__all__ = ["WebSocketProtocol"]

_TEXT, _BINARY, _CLOSE, _PONG, _FAILED = (
    _native.TEXT, _native.BINARY, _native.CLOSE, _native.PONG, _native.FAILED,
)
# The zlib level of the compression extensions when ws_per_message_deflate
# is on (the runtime's default).
_COMPRESSION_LEVEL = 6
# A connection that carried no message for this long gives back its
# compressor (it keeps no context between messages: see __init__) and any
# large buffer; the next message makes them again.
_QUIET = 5.0
# The rest of a frame larger than this is read straight into the engine's
# buffer (builds for CPython 3.11+, which have read_view): no bytes object
# per read and no copy out of it.
_DIRECT_MIN = 64 * 1024
_DIRECT = hasattr(_native.Engine, "read_view")


class WebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection of uvicorn, on polysocket's engine."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = logging.getLogger("uvicorn.error")
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers = server_state.default_headers

        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "ws"
        self.scope: dict[str, Any] = {}

        # Each message compressed on its own (server_no_context_takeover):
        # a compressor holds a few hundred KiB, and one that keeps no
        # context can be given back while the connection is quiet.
        self.handshake = _native.ServerHandshake.reading(
            max_message_size=config.ws_max_size,
            compression_level=_COMPRESSION_LEVEL if config.ws_per_message_deflate else None,
            no_context_takeover=True,
        )
        self.engine: Any = None
        # Reads the rest of a large frame while it is the transport's
        # protocol (see read_directly).
        self.frame_reader = _FrameReader(self)
        # Bytes uvicorn's HTTP layer read past the head (hixie-76's key3).
        self.leftover = b""
        self.connect_sent = False
        self.handshake_complete = False
        # The app's own HTTP answer (websocket.http.response): its status,
        # its head until the first body part says how the body is framed,
        # and whether it goes out in chunks.
        self.initial_response: int | None = None
        self.response_head: tuple[int, Any] | None = None
        self.chunked = False
        self.close_sent = False
        self.disconnected = False
        self.close_timer: asyncio.TimerHandle | None = None
        # When the last message went in or out, and the check that none
        # followed for _QUIET seconds.
        self.last_active = 0.0
        self.quiet_timer: asyncio.TimerHandle | None = None
        # How long a close handshake we began waits for the peer's answer.
        self.close_timeout = 10.0

        self.queue: collections.deque[dict[str, Any]] = collections.deque()
        self.queue_waiter: asyncio.Future[None] | None = None
        # Received bytes left undecoded in the engine (see dispatch).
        self.backlog = False
        self.read_paused = False
        self.writable = asyncio.Event()
        self.writable.set()

        self.ping_interval = config.ws_ping_interval
        self.ping_timeout = config.ws_ping_timeout
        self.ping_timer: asyncio.TimerHandle | None = None
        self.pong_timer: asyncio.TimerHandle | None = None
        self.ping_payload: bytes | None = None
        self.ping_sent_at = 0.0

    # ------------------------------------------------------------ transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        self.server = get_local_addr(self.transport)
        self.client = get_remote_addr(self.transport)
        self.scheme = "wss" if is_ssl(self.transport) else "ws"
        get_protocol = getattr(transport, "get_protocol", None)
        http = get_protocol() if get_protocol is not None else None
        self.leftover = _bytes_after_head(http)
        # uvicorn writes the head out again as HTTP/1.1 whatever the client
        # sent; an HTTP/1.0 upgrade is refused (400) as on every face.
        scope = getattr(http, "scope", None)
        self.http_version = scope.get("http_version", "1.1") if isinstance(scope, dict) else "1.1"

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_keepalive()
        if self.quiet_timer is not None:
            self.quiet_timer.cancel()
            self.quiet_timer = None
        code = 1005 if self.handshake_complete and self.initial_response is None else 1006
        self.put({"type": "websocket.disconnect", "code": code})
        self.connections.discard(self)
        self.handshake_complete = True
        self.disconnected = True
        # A send waiting for the buffer to drain would wait for ever.
        self.writable.set()
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def shutdown(self) -> None:
        """uvicorn is stopping: 1012 (service restart) to an open
        connection, 500 to one still in its handshake."""
        self.stop_keepalive()
        if self.close_sent:
            if self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = None
            self.transport.close()
            return
        if self.engine is not None and self.initial_response is None:
            self.put({"type": "websocket.disconnect", "code": 1012})
            self.close_engine(1012, "")
        else:
            self.send_500_response()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.engine is not None:
            self.dispatch(self.engine.receive(data))
            self.read_directly()
            return
        if self.leftover:
            data, self.leftover = data + self.leftover, b""
        if self.http_version != "1.1":
            line_end = data.find(b"\r\n")
            if data[:line_end].endswith(b" HTTP/1.1"):
                version = self.http_version.encode("ascii")
                data = data[:line_end - 3] + version + data[line_end:]
            self.http_version = "1.1"
        try:
            ready = self.handshake.feed(data)
        except _native.HandshakeError as e:
            message, status, headers = e.args
            self.logger.info('%s - "WebSocket" %d: %s', _addr(self.client), status, message)
            self.write_http(status, [(n.encode("latin-1"), v.encode("latin-1"))
                                     for n, v in headers], message.encode())

            self.handshake_complete = self.close_sent = True
            self.transport.close()
            return
        if ready and not self.connect_sent:
            self.connect()

    # ----------------------------------------------------------- handshake

    def connect(self) -> None:
        """The request is complete: the app decides (``websocket.connect``)."""
        self.connect_sent = True
        hs = self.handshake
        raw_path, _, query = hs.target.partition("?")
        root_path = self.config.root_path
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.5"},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": root_path,
            "path": root_path + unquote(raw_path),
            "raw_path": root_path.encode("ascii") + raw_path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "headers": [(n.lower().encode("latin-1"), v.encode("latin-1"))
                        for n, v in hs.headers],
            "subprotocols": hs.subprotocols,
            "state": self.app_state.copy(),
            "extensions": {
                "websocket.http.response": {},
                # Which draft the client speaks; the compression extension
                # is known once the app accepts.
                "polysocket": {"draft": hs.draft, "extension": None},
            },
        }
        self.put({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def accept(self, message: dict[str, Any]) -> None:
        self.logger.info('%s - "WebSocket %s" [accepted]', get_client_addr(self.scope),
                         get_path_with_query_string(self.scope))
        headers = [(n.decode("latin-1"), v.decode("latin-1"))
                   for n, v in [*self.default_headers, *message.get("headers", [])]]
        try:
            response, engine = self.handshake.accept(
                message.get("subprotocol"), headers, self.scheme == "wss")
        except _native.HandshakeError as e:
            raise RuntimeError(e.args[0]) from None
        self.handshake = None
        self.engine = engine
        self.handshake_complete = True
        self.scope["extensions"]["polysocket"]["extension"] = engine.extension
        self.transport.write(response)
        self.start_keepalive()
        # Frames that came along with the request are in the engine.
        self.dispatch(engine.receive(b""))

    def refuse(self) -> None:
        """``websocket.close`` before accepting: HTTP 403."""
        self.logger.info('%s - "WebSocket %s" 403', get_client_addr(self.scope),
                         get_path_with_query_string(self.scope))
        self.put({"type": "websocket.disconnect", "code": 1006})
        self.write_http(403, [], b"")
        self.handshake_complete = self.close_sent = True
        self.transport.close()

    def write_http(self, status: int, headers: Any, body: bytes) -> None:
        """A whole HTTP answer instead of the upgrade."""
        self.write_head(status, headers, (b"content-length", b"%d" % len(body)))
        self.transport.write(body)

    def write_head(self, status: int, headers: Any, framing: tuple[bytes, bytes]) -> bool:
        """The head of an HTTP answer instead of the upgrade; the connection
        closes after its body. uvicorn's default headers, a content type and
        `framing` (how the body ends) are added unless the app gave them;
        `framing` is also left out when the app gave a Content-Length.
        Returns whether `framing` went out."""
        given = [(bytes(n), bytes(v)) for n, v in headers]
        names = {n.lower() for n, _ in given}
        framed = b"content-length" not in names and framing[0] not in names
        added = [*self.default_headers,
                 (b"content-type", b"text/plain; charset=utf-8"),
                 (b"connection", b"close")]
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, _phrase(status).encode())]
        lines += [b"%s: %s\r\n" % (n, v) for n, v in given]
        lines += [b"%s: %s\r\n" % (n, v) for n, v in added if n.lower() not in names]
        if framed:
            lines.append(b"%s: %s\r\n" % framing)
        self.transport.write(b"".join([*lines, b"\r\n"]))
        return framed

    def response_body(self, body: bytes, more: bool) -> None:
        """A part of the app's HTTP answer. A body in one part gets a
        Content-Length; one in several parts is chunked unless the app set
        the length itself."""
        if self.response_head is not None:
            (status, headers), self.response_head = self.response_head, None
            if not more:
                self.write_http(status, headers, body)
                body = b""
            else:
                self.chunked = self.write_head(status, headers, (b"transfer-encoding", b"chunked"))
        if self.chunked:
            body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (b"" if more else b"0\r\n\r\n")
        self.transport.write(body)
        if not more:
            self.put({"type": "websocket.disconnect", "code": 1006})
            self.close_sent = True
            self.transport.close()

    def send_500_response(self) -> None:
        if self.handshake_complete or self.initial_response is not None:
            return
        self.write_http(500, [], b"Internal Server Error")

    # ------------------------------------------------------------- events

    def dispatch(self, events: Any) -> None:
        """Hand what the engine decodes to the app; write what it queued
        (pongs, the close echo) at once. Decoding stops at a message the app
        has not taken: the next frame is looked at when the app asks for
        the next message, having answered this one, so that a message
        followed by an invalid frame is answered before the close (as when
        a handler is called inline). At most one message waits, within
        any ws_max_queue."""
        for kind, payload in events:
            if kind == _TEXT or kind == _BINARY:
                key = "text" if kind == _TEXT else "bytes"
                if self.deliver({"type": "websocket.receive", key: payload}):
                    self.backlog = True
                    break
            elif kind == _PONG:
                self.pong_received(payload)
            elif kind == _CLOSE:
                code, reason = payload
                self.closed_by_peer(1005 if code is None else code, reason or "")
                break
            elif kind == _FAILED:
                code, reason = payload
                self.put({"type": "websocket.disconnect", "code": code, "reason": reason})
                self.close_sent = True
                self.flush()
                self.transport.close()
                break
        self.flush()

    def read_directly(self) -> None:
        """A large frame has begun: its rest is read by the frame reader, a
        buffered protocol, straight into the engine's buffer; it hands the
        transport back at the frame's end. Small reads stay with
        data_received, which is cheaper for them."""
        if _DIRECT and self.engine.awaited > _DIRECT_MIN and not self.transport.is_closing():
            set_protocol = getattr(self.transport, "set_protocol", None)
            if set_protocol is not None:
                set_protocol(self.frame_reader)

    def deliver(self, event: dict[str, Any]) -> bool:
        """Queue a message for the app; reads pause while it waits (as in
        uvicorn's implementations). False when the app is past
        websocket.close: the message is dropped."""
        if self.close_sent:
            return False
        self.put(event)
        self.active()
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        return True

    def closed_by_peer(self, code: int, reason: str) -> None:
        if self.close_sent:
            # The answer to our close: the closing handshake is complete.
            if self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = None
        else:
            self.put({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.flush()
        self.transport.close()

    def flush(self) -> None:
        if self.engine is not None and self.engine.has_output:
            output = self.engine.take_output()
            if isinstance(output, list):
                self.transport.writelines(output)
            else:
                self.transport.write(output)

    def active(self) -> None:
        """A message went in or out: check later whether that stopped."""
        self.last_active = self.loop.time()
        if self.quiet_timer is None:
            self.quiet_timer = self.loop.call_later(_QUIET, self.quiet)

    def quiet(self) -> None:
        self.quiet_timer = None
        left = self.last_active + _QUIET - self.loop.time()
        if left > 0:
            self.quiet_timer = self.loop.call_later(left, self.quiet)
        elif self.engine is not None and not self.transport.is_closing():
            self.engine.release_buffers()

    def put(self, event: dict[str, Any]) -> None:
        self.queue.append(event)
        waiter = self.queue_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---------------------------------------------------------- keepalive

    def start_keepalive(self) -> None:
        if self.ping_interval and self.engine.has_ping:
            self.ping_timer = self.loop.call_later(self.ping_interval, self.send_ping)

    def stop_keepalive(self) -> None:
        for timer in (self.ping_timer, self.pong_timer):
            if timer is not None:
                timer.cancel()
        self.ping_timer = self.pong_timer = None
        self.ping_payload = None

    def send_ping(self) -> None:
        self.ping_timer = None
        if self.close_sent or self.transport.is_closing():
            return
        # A payload of its own tells this ping's pong from stale ones.
        self.ping_payload = os.urandom(4)
        self.ping_sent_at = self.loop.time()
        self.engine.ping(self.ping_payload)
        self.flush()
        if self.ping_timeout:
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.ping_timed_out)
        else:
            self.ping_timer = self.loop.call_later(self.ping_interval, self.send_ping)

    def pong_received(self, payload: bytes) -> None:
        if self.ping_payload is None or payload != self.ping_payload:
            return
        self.ping_payload = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
            self.ping_timer = self.loop.call_later(self.ping_interval, self.send_ping)

    def ping_timed_out(self) -> None:
        self.pong_timer = None
        if self.close_sent or self.transport.is_closing():
            return
        self.close_engine(1011, "keepalive ping timeout")
        self.transport.close()

    def close_engine(self, code: int, reason: str) -> None:
        try:
            self.engine.close(code, reason)
        except _native.ClosedError:
            pass  # the engine had closed already: nothing to say
        self.close_sent = True
        self.flush()

    # ---------------------------------------------------------------- ASGI

    async def run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self.send_500_response()
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.response_head is not None:
            # The app answered without a body: the head alone goes out.
            self.write_http(*self.response_head, b"")
            self.response_head = None
        if self.close_timer is None:
            self.transport.close()

    async def receive(self) -> dict[str, Any]:
        while not self.queue:
            if self.backlog:
                # The app is done with the last message: the next one.
                self.backlog = False
                self.dispatch(self.engine.receive(b""))
                continue
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()
            self.queue_waiter = self.loop.create_future()
            try:
                await self.queue_waiter
            finally:
                self.queue_waiter = None
        return self.queue.popleft()

    def resume(self) -> None:
        """After websocket.close: what waits in the engine is decoded (its
        messages dropped) and reading goes on, for the peer's close frame."""
        if self.backlog:
            self.backlog = False
            self.dispatch(self.engine.receive(b""))
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    async def send(self, message: dict[str, Any]) -> None:
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        kind = message["type"]
        if not self.handshake_complete and self.initial_response is None:
            if kind == "websocket.accept":
                if not self.transport.is_closing():
                    self.accept(message)
            elif kind == "websocket.close":
                self.refuse()
            elif kind == "websocket.http.response.start":
                status = message["status"]
                if not 100 <= status < 600:
                    raise RuntimeError("Invalid HTTP status code '%d' in response." % status)
                self.logger.info('%s - "WebSocket %s" %d', get_client_addr(self.scope),
                                 get_path_with_query_string(self.scope), status)
                self.initial_response = status
                self.response_head = (status, list(message.get("headers", [])))
                self.handshake_complete = True
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' "
                    f"or 'websocket.http.response.start' but got '{kind}'.")
        elif self.initial_response is not None:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body' but got '{kind}'.")
            self.response_body(message.get("body", b""), message.get("more_body", False))
        elif not self.close_sent:
            if kind == "websocket.send":
                data, text = message.get("bytes"), message.get("text")
                try:
                    if data is not None:
                        self.engine.send(data, True)
                    elif text is not None:
                        self.engine.send(text)
                except _native.ClosedError:
                    raise ClientDisconnected() from None
                self.flush()
                self.active()
            elif kind == "websocket.close":
                if not self.transport.is_closing():
                    code = message.get("code", 1000)
                    reason = message.get("reason") or ""
                    self.put({"type": "websocket.disconnect", "code": code, "reason": reason})
                    self.close_engine(code, reason)
                    # The peer's close frame must be read.
                    self.resume()
                    self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)
            else:
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{kind}'.")
        else:
            raise RuntimeError(f"Unexpected ASGI message '{kind}', after sending 'websocket.close'.")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _addr(client: tuple[str, int] | None) -> str:
    return "%s:%d" % client if client else ""


def _bytes_after_head(http: Any) -> bytes:
    """What the client sent after the request head, which uvicorn's HTTP
    layer read but does not hand over (it writes the head out again):
    hixie-76's 8-byte key3, sent with the head, is there. h11 keeps it in
    its buffer. httptools and zttp drop it with the chunk their
    ``data_received`` is handling, which is up the stack (uvicorn builds
    this protocol from there): httptools' upgrade exception says where the
    head ended in it; otherwise the head ends at its blank line."""
    if http is None:
        return b""
    trailing = getattr(getattr(http, "conn", None), "trailing_data", None)
    if trailing is not None:
        return bytes(trailing[0])
    frame = sys._getframe(1)
    while frame is not None and not (
        frame.f_code.co_name == "data_received" and frame.f_locals.get("self") is http
    ):
        frame = frame.f_back
    data = frame.f_locals.get("data") if frame is not None else None
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return b""
    data = bytes(data)
    exc = sys.exc_info()[1]
    if type(exc).__name__ == "HttpParserUpgrade" and exc.args:
        return data[exc.args[0]:]
    end = data.find(b"\r\n\r\n")
    return data[end + 4:] if end >= 0 else b""


class _FrameReader(asyncio.BufferedProtocol):
    """The transport's protocol while the rest of a large frame arrives:
    the loop reads into a view of the engine's receive buffer."""

    def __init__(self, owner: WebSocketProtocol) -> None:
        self.owner = owner

    def get_buffer(self, sizehint: int) -> Any:
        engine = self.owner.engine
        return engine.read_view(max(engine.awaited, 1))

    def buffer_updated(self, nbytes: int) -> None:
        owner = self.owner
        owner.dispatch(owner.engine.commit(nbytes))
        if owner.engine.awaited <= _DIRECT_MIN:
            owner.transport.set_protocol(owner)

    def eof_received(self) -> None:
        self.owner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.owner.pause_writing()

    def resume_writing(self) -> None:
        self.owner.resume_writing()
