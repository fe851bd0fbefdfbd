"""A drop-in for ``tornado.websocket`` whose protocol is polysocket's Rust engine.

Import from here instead of ``tornado.websocket``::

    from polysocket.tornado import WebSocketHandler, websocket_connect

`WebSocketHandler` is Tornado's handler up to the upgrade (prepare, cookies,
path arguments, origin rules, 400/403/426 answers, every hook and setting),
with the frame protocol underneath replaced by the engine. Beyond Tornado it
accepts every older draft on the same route (hixie-75, hixie-76/hybi-00,
hybi-01..17; restrict with `WebSocketHandler.allowed_drafts`), tells which one
was negotiated (`WebSocketHandler.draft`), and compresses on every draft that
has an extension for it (permessage-deflate, deflate-frame, deflate-stream)
when `get_compression_options` returns a dict.

`websocket_connect` is Tornado's client with the same engine under it.
"""

from __future__ import annotations

import asyncio
import sys
import warnings
from typing import Any, Awaitable, Callable, Iterator, Sequence, cast
from urllib.parse import urlsplit

import tornado.escape
import tornado.web
import tornado.websocket as _tws
from tornado import gen, httpclient, httputil
from tornado.concurrent import (
    Future,
    future_add_done_callback,
    future_set_result_unless_cancelled,
)
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.log import gen_log
from tornado.netutil import Resolver
from tornado.websocket import WebSocketClosedError, WebSocketError

from . import _native, _tornado_cluster
from ._tornado_cluster import join_cluster

__all__ = [
    "join_cluster",
    "WebSocketHandler",
    "WebSocketClientConnection",
    "WebSocketClosedError",
    "WebSocketError",
    "WebSocketProtocol",
    "websocket_connect",
]

WebSocketProtocol = _tws.WebSocketProtocol

#: Bytes asked for per read (grows and shrinks between these with the
#: traffic): whatever arrived is fed to the engine at once (many frames per
#: Python call). The small size is what an idle connection holds.
_MIN_READ = 1024
_READ_SIZE = 1 << 20
#: A read buffer up to this size stays in use between messages.
_KEEP = 64 * 1024
#: Reads straight into the engine ask for at most this much at once;
#: larger frames are read as a small head and then their rest.
_DIRECT_MAX = 256 * 1024
#: Room for a frame's header (and the next one's) in a read sized to fit it.
_FRAME_SLACK = 64
#: Seconds without a large read after which a connection gives its large
#: buffers back.
_QUIET = 1.0
#: Like Tornado, yield to the IOLoop after this much work while frames keep
#: arriving, counting each frame as 1 KiB on top of its bytes.
_YIELD_THRESHOLD = 256 * 1024
_FRAME_COST = 1024
#: Seconds a closing side waits for the peer's close frame (Tornado's value).
_CLOSE_TIMEOUT = 5.0

# Headers the engine writes itself in a 101 answer (for some draft).
_ENGINE_HEADERS = frozenset(
    h.lower()
    for h in (
        "Content-Type", "Content-Length", "Transfer-Encoding", "Upgrade", "Connection",
        "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions",
        "Sec-WebSocket-Nonce", "Sec-WebSocket-Origin", "Sec-WebSocket-Location",
        "WebSocket-Origin", "WebSocket-Location", "WebSocket-Protocol",
    )
)  # fmt: skip

_TEXT, _BINARY = _native.TEXT, _native.BINARY
_CLOSE, _PING, _PONG = _native.CLOSE, _native.PING, _native.PONG
_FAILED = _native.FAILED
#: Builds for CPython 3.11+ lend the engine's buffer to reads (the stable
#: ABI has the buffer protocol from 3.11); older ones read into ours.
_DIRECT_READS = hasattr(_native.Engine, "read_view")


def _compression_level(options: dict[str, Any] | None) -> int | None:
    """The zlib level for the engine, or None when compression is off."""
    if options is None:
        return None
    if not isinstance(options, dict):
        raise TypeError(
            f"compression options must be a dict or None, not {type(options).__name__}"
        )
    return options.get("compression_level", tornado.web.GZipContentEncoding.GZIP_LEVEL)


def _on_written(result: Future[None], written: Future[None]) -> None:
    if result.done():
        return
    if written.cancelled() or written.exception() is not None:
        result.set_exception(WebSocketClosedError())
        # Awaiting the write is optional (as in Tornado): a caller that does
        # gets the error, nobody gets "exception was never retrieved".
        result.exception()
    else:
        result.set_result(None)


class _EngineProtocol(_tws.WebSocketProtocol13):
    """Tornado's protocol object, with frames handled by the Rust engine.

    It keeps Tornado's attributes and hooks (``close_code``,
    ``selected_subprotocol``, ``_handle_message(opcode, data)``,
    ``_write_frame``, the byte counters, pong coalescing, periodic pings),
    so code and tests that look inside ``ws_connection`` or
    ``ws.protocol`` keep working. Reused from `WebSocketProtocol13`: the
    ping timer, pong coalescing, ``set_nodelay``.
    """

    def __init__(self, handler: Any, params: _tws._WebSocketParams) -> None:
        _tws.WebSocketProtocol.__init__(self, handler)
        self.params = params
        self.mask_outgoing = False  # the engine masks by role; kept for Tornado parity
        self._compression_options = params.compression_options
        self._engine: _native.Engine | None = None
        self._selected_subprotocol: str | None = None
        self._received_pong = False
        self._pong_future: Future[None] | None = None
        self._pending_pong: bytes | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._ping_coroutine: asyncio.Task | None = None
        self._waiting: object = None
        # While a batch of received events is dispatched, writes queue in
        # the engine and go out in one stream write, sharing one Future.
        self._batching = False
        self._batch_future: Future[None] | None = None
        # The large read buffer kept between large messages, and the timer
        # that drops it (and the engine's large buffers) once quiet.
        self._spare: bytearray | None = None
        self._read_size = _MIN_READ
        self._large_reads = 0
        self._quiet_timer: object = None

    # Tornado's counters, read from the engine (the tests compare them).
    @property
    def _message_bytes_in(self) -> int:
        return self._engine.message_bytes_in if self._engine else 0

    @property
    def _message_bytes_out(self) -> int:
        return self._engine.message_bytes_out if self._engine else 0

    @property
    def _wire_bytes_in(self) -> int:
        return self._engine.wire_bytes_in if self._engine else 0

    @property
    def _wire_bytes_out(self) -> int:
        return self._engine.wire_bytes_out if self._engine else 0

    @property
    def draft(self) -> str | None:
        """The negotiated draft (``"rfc6455"``, ``"hybi-08"``, ``"hixie-76"``...)."""
        return self._engine.draft if self._engine else None

    @property
    def extension(self) -> str | None:
        """The compression extension in force, if any."""
        return self._engine.extension if self._engine else None

    # ------------------------------------------------------------ server side

    async def accept_connection(self, handler: WebSocketHandler) -> None:
        request = handler.request
        hs = _native.ServerHandshake(
            request.method,
            request.uri,
            list(request.headers.get_all()),
            max_message_size=self.params.max_message_size,
            compression_level=_compression_level(self._compression_options),
            drafts=handler.allowed_drafts,
        )
        try:
            ready = hs.feed()
        except _native.HandshakeError as e:
            message, status, headers = e.args
            handler.set_status(status)
            for name, value in headers:
                handler.set_header(name, value)
            handler.finish(message)
            gen_log.debug("WebSocket handshake refused: %s", message)
            return
        offered = hs.subprotocols
        self.selected_subprotocol = handler.select_subprotocol(offered)
        if self.selected_subprotocol and self.selected_subprotocol not in offered:
            raise ValueError(
                f"select_subprotocol returned {self.selected_subprotocol!r}, "
                f"which the client did not offer ({offered!r})"
            )
        extra = [
            (name, value)
            for name, value in handler._headers.get_all()
            if name.lower() not in _ENGINE_HEADERS
        ]
        for cookie in getattr(handler, "_new_cookie", {}).values():
            extra.append(("Set-Cookie", cookie.OutputString(None)))
        handler.set_status(101)
        self.stream = handler._detach_stream()
        try:
            while not ready:  # hixie-76: the 8-byte key3 follows the head
                ready = hs.feed(await self.stream.read_bytes(8, partial=True))
            response, self._engine = hs.accept(
                self.selected_subprotocol or None, extra, request.protocol == "https"
            )
            self.stream.write(response)
        except (StreamClosedError, _native.HandshakeError):
            gen_log.debug("WebSocket handshake failed", exc_info=True)
            self._abort()
            return
        # This frame lives as long as the connection: keep nothing of the
        # handshake.
        del hs, response, extra, offered
        handler._log()
        handler.on_finish()
        self.start_pinging()
        cluster = _tornado_cluster.current()
        if cluster is not None:
            handler._cluster = cluster
            handler.connection_id = cluster.opened(handler)
        try:
            opened = handler.open(*handler.open_args, **handler.open_kwargs)
            if opened is not None:
                await opened
        except Exception:
            handler.log_exception(*sys.exc_info())
            self._close_on_error()
            handler.on_ws_connection_close(self.close_code, self.close_reason)
            return
        await self._receive_frame_loop()

    # ------------------------------------------------------------ client side

    def _process_server_headers(self, key: Any, headers: httputil.HTTPHeaders) -> None:
        """Check the 101 answer with the engine that built the request."""
        engine = self.handler._handshake.feed_head(101, list(headers.get_all()))
        if engine is None:
            raise WebSocketError("incomplete WebSocket handshake answer")
        self._engine = engine
        self.selected_subprotocol = engine.subprotocol

    # ---------------------------------------------------------------- sending

    def write_message(
        self, message: str | bytes | dict[str, Any], binary: bool = False
    ) -> Future[None]:
        if isinstance(message, dict):
            message = tornado.escape.json_encode(message)
        if self.stream is None or self.stream.closed():
            raise WebSocketClosedError()
        try:
            self._engine.send(message, binary)
        except _native.ClosedError:
            raise WebSocketClosedError() from None
        return self._flushed()

    def write_ping(self, data: bytes) -> None:
        self._write_frame(True, 0x9, data)

    def write_prepared(self, prepared: _native.Prepared) -> Future[None]:
        """Queue a message encoded once for many connections (a cluster
        broadcast): its frame is copied, not encoded again."""
        if self.stream is None or self.stream.closed():
            raise WebSocketClosedError()
        try:
            self._engine.send_prepared(prepared)
        except _native.ClosedError:
            raise WebSocketClosedError() from None
        return self._flushed()

    def _write_frame(
        self, fin: bool, opcode: int, data: bytes, flags: int = 0
    ) -> Future[None]:
        """Queue one whole frame in the engine and write it (Tornado's
        signature; ``flags`` is ignored: the engine sets RSV bits itself)."""
        if self.stream is None or self.stream.closed():
            raise StreamClosedError()
        if not fin:
            raise ValueError("fragments are sent by the engine, not frame by frame")
        engine = self._engine
        try:
            if opcode == 0x9:
                engine.ping(data)
            elif opcode == 0xA:
                engine.pong(data)
            elif opcode in (0x1, 0x2):
                engine.send(data, opcode == 0x2)
            else:
                raise ValueError(f"cannot write a frame of opcode {opcode:#x}")
        except _native.ClosedError:
            raise StreamClosedError() from None
        return self._flushed()

    def _flushed(self) -> Future[None]:
        """The Future of queued output: written now, or with the batch."""
        if self._batching:
            if self._batch_future is None:
                self._batch_future = Future()
            return self._batch_future
        return self._flush()

    def _flush(self, close_stream: bool = False) -> Future[None]:
        """Write all queued output. The Future resolves once it is written
        (fails with WebSocketClosedError if the stream closes first). Closes
        the stream after the write when the engine is done, or if asked."""
        result = self._batch_future or Future()
        self._batch_future = None
        stream = self.stream
        data = self._engine.take_output() if self._engine else b""
        written: Future[None] | None = None
        if stream is None or stream.closed():
            if data:
                result.set_exception(WebSocketClosedError())
                result.exception()  # nobody may await a write; don't warn
            else:
                result.set_result(None)
            return result
        if data:
            try:
                if isinstance(data, list):
                    # Large payloads handed back as the objects sent: each
                    # is written from itself (the last write's Future
                    # resolves once all are written).
                    for piece in data:
                        written = stream.write(piece)
                else:
                    written = stream.write(data)
            except StreamClosedError:
                result.set_exception(WebSocketClosedError())
                result.exception()
                return result
            future_add_done_callback(written, lambda f: _on_written(result, f))
        else:
            result.set_result(None)
        if close_stream or (self._engine and self._engine.state == "closed"):
            if written is None or written.done():
                stream.close()
            else:
                future_add_done_callback(written, lambda f: stream.close())
        return result

    # -------------------------------------------------------------- receiving

    async def _receive_frame_loop(self) -> None:
        """Read every byte straight into the engine's buffer (no copy). A
        read asks for `_read_size` bytes of whatever has arrived (many
        frames per Python call), or for the whole rest of a large frame
        before waking up (the stream reads on by itself: one wake-up, not
        one per segment). The read size follows the traffic: it grows while
        reads fill it (a burst) and, after a large frame, fits the next
        one of that size (one read per frame), up to `_DIRECT_MAX`; a
        larger frame is read from a small read of its head on, so that the
        engine never moves a large head to make room for its rest. It goes
        back to `_MIN_READ`, and the engine's large buffers are freed, once
        the connection is quiet (`_quiet`). Builds without `read_view`
        read through a buffer of ours (`_read_and_copy`)."""
        try:
            engine = self._engine
            stream = self.stream
            # Frames that came with the handshake are already in the engine.
            await self._dispatch(engine.receive(b""))
            if not _DIRECT_READS:
                await self._read_and_copy(engine)
                return
            n = 0
            while not self.client_terminated:
                awaited = engine.awaited
                size = self._read_size
                whole = awaited > _MIN_READ
                view = engine.read_view(awaited if whole else size)
                try:
                    n_before, n = n, await stream.read_into(view, partial=not whole)
                finally:
                    view.release()
                await self._dispatch(engine.commit(n), n)
                if whole:
                    frame = n_before + n + _FRAME_SLACK
                    self._read_size = (
                        max(size, 1 << frame.bit_length()) if frame <= _DIRECT_MAX else _MIN_READ
                    )
                    self._large_read()
                elif n == size:
                    self._read_size = min(size * 4, _DIRECT_MAX)
                    self._large_read()
        except StreamClosedError:
            self._abort()
        finally:
            self.handler.on_ws_connection_close(self.close_code, self.close_reason)

    async def _read_and_copy(self, engine: Any) -> None:
        """Builds without `read_view` (CPython < 3.11): read into a buffer
        of ours, reused, that the engine copies from. It grows while reads
        fill it with whole frames (a burst). Between bursts the next read
        starts in the small one again (if the buffer grew beyond `_KEEP`),
        the large one kept aside for the next burst, until the connection
        has been quiet for a while (`_quiet`): an idle connection holds no
        large buffer, here or in the engine. The rest of a large frame is
        read on its own, all of it before waking up."""
        small = buf = bytearray(_MIN_READ)
        while not self.client_terminated:
            awaited = engine.awaited
            if awaited > _MIN_READ:
                self._large_read()
                if len(buf) < awaited:
                    spare = self._spare
                    if spare is None or len(spare) < min(awaited, _READ_SIZE):
                        spare = self._spare = bytearray(min(awaited, _READ_SIZE))
                    buf = spare
                n = await self.stream.read_into(memoryview(buf)[: min(awaited, len(buf))])
                await self._dispatch(engine.receive(buf, n), n)
                continue
            n = await self.stream.read_into(buf, partial=True)
            await self._dispatch(engine.receive(buf, n), n)
            size = len(buf)
            if engine.awaited > _MIN_READ:
                # A large frame began: its rest is read on its own.
                continue
            if n == size:
                # Reads fill the buffer: a burst of frames.
                spare = self._spare
                if spare is not None and len(spare) > size:
                    buf = spare
                elif size < _READ_SIZE:
                    buf = self._spare = bytearray(min(size * 4, _READ_SIZE))
                self._large_read()
            elif size > _KEEP:
                buf = small

    def _large_read(self) -> None:
        """Note a large read: the large buffers stay until `_QUIET`."""
        self._large_reads += 1
        if self._quiet_timer is None:
            self._quiet_timer = IOLoop.current().call_later(_QUIET, self._quiet, 0)

    async def _dispatch(self, events: Iterator[tuple[int, Any]], n: int = 0) -> None:
        """Hand each event the engine decodes (``engine.receive(...)`` or
        ``engine.commit(n)``) to ``_handle_message``, awaiting coroutine
        callbacks in order. The engine decodes each event only when the
        loop asks for it, so that the answers to a message go out before a
        failure that a later frame causes. The ``n`` bytes read count
        toward the work after which the loop lets other connections run."""
        work = n
        self._batching = True
        try:
            for kind, payload in events:
                if self.client_terminated:
                    break
                if kind == _FAILED:
                    self._on_protocol_error(*payload)
                    break
                handled = self._handle_message(kind, payload)
                work += _FRAME_COST
                if handled is not None or work >= _YIELD_THRESHOLD:
                    self._end_batch()
                    if handled is not None:
                        await handled
                    else:
                        await asyncio.sleep(0)
                    work = 0
                    self._batching = True
        finally:
            self._end_batch()

    def _end_batch(self) -> None:
        self._batching = False
        if self._batch_future is not None or (self._engine and self._engine.has_output):
            self._flush()

    def _handle_message(self, opcode: int, data: Any) -> Future[None] | None:
        """Deliver one event (Tornado's hook: opcode and payload; a close
        carries ``(code, reason)``)."""
        if self.client_terminated:
            return None
        if opcode == _TEXT or opcode == _BINARY:
            return self._run_callback(self.handler.on_message, data)
        if opcode == _PING:
            self._send_pong(data)
            self._run_callback(self.handler.on_ping, data)
        elif opcode == _PONG:
            self._received_pong = True
            return self._run_callback(self.handler.on_pong, data)
        elif opcode == _CLOSE:
            # The engine already answered (echoing the code, RFC 6455 5.5.1).
            self.client_terminated = True
            self.close_code, self.close_reason = data
            self.close(self.close_code)
        return None

    def _quiet(self, seen: int) -> None:
        """No large read for `_QUIET` seconds: give the large buffers back."""
        if self._large_reads != seen:
            self._quiet_timer = IOLoop.current().call_later(_QUIET, self._quiet, self._large_reads)
            return
        self._quiet_timer = None
        self._spare = None
        self._read_size = _MIN_READ
        if self._engine is not None:
            self._engine.release_buffers()

    def _send_pong(self, data: bytes) -> None:
        """Answer a ping. Like Tornado, at most one pong waits to be written
        (a peer that pings faster than it reads gets the latest answered,
        RFC 6455 5.5.3); pongs queued in the same batch as the previous one
        are written with it in one write, so a burst of pings gets every
        answer, in order."""
        if self._pong_future is not None and self._pong_future is self._batch_future:
            self._pong_future = None
        super()._send_pong(data)

    def _run_callback(
        self, callback: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Future[Any] | None:
        """Run an application callback; an exception (also in a coroutine)
        is logged through ``handler.log_exception`` and closes the
        connection with 1011. Returns a Future for coroutines."""
        try:
            result = callback(*args, **kwargs)
        except (Exception, asyncio.CancelledError):
            self.handler.log_exception(*sys.exc_info())
            self._close_on_error()
            return None
        if result is None:
            return None
        done: Future[None] = Future()

        def on_done(f: Future[Any]) -> None:
            try:
                f.result()
            except (Exception, asyncio.CancelledError):
                self.handler.log_exception(*sys.exc_info())
                self._close_on_error()
            future_set_result_unless_cancelled(done, None)

        future_add_done_callback(gen.convert_yielded(result), on_done)
        return done

    def _close_on_error(self) -> None:
        """The application failed: close with 1011 and drop the connection."""
        if self._engine is not None and self._engine.state == "open":
            try:
                self._engine.close(1011, None)
            except (_native.ClosedError, ValueError):
                pass  # a draft without close codes: the frame is still sent
        self._terminate()

    def _on_protocol_error(self, code: int, reason: str) -> None:
        """The peer broke the protocol: the engine queued the close frame."""
        gen_log.debug("WebSocket protocol error, closing with %d: %s", code, reason)
        self._terminate()

    def _terminate(self) -> None:
        """Write what is queued, then close the stream without waiting."""
        self.client_terminated = True
        self.server_terminated = True
        if self.stream is not None:
            self._flush(close_stream=True)
        self._stop_timers()

    # ---------------------------------------------------------------- closing

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if not self.server_terminated:
            self.server_terminated = True
            if self._engine is not None and self._engine.state == "open":
                if self.stream is not None and not self.stream.closed():
                    self._engine.close(code, reason)
                    self._flush()
        stream = self.stream
        if stream is None:
            self._stop_timers()
            return
        if self.client_terminated or (self._engine and self._engine.state == "closed"):
            self._stop_timers()
            if not stream.closed():
                self._flush(close_stream=True)
        elif self._waiting is None:
            # Give the peer a few seconds to answer our close frame.
            self._waiting = stream.io_loop.add_timeout(
                stream.io_loop.time() + _CLOSE_TIMEOUT, self._abort
            )
        if self._ping_coroutine:
            self._ping_coroutine.cancel()
            self._ping_coroutine = None

    def _stop_timers(self) -> None:
        if self._waiting is not None and self.stream is not None:
            self.stream.io_loop.remove_timeout(self._waiting)
        self._waiting = None
        if self._quiet_timer is not None:
            IOLoop.current().remove_timeout(self._quiet_timer)
            self._quiet_timer = None
        self._spare = None
        if self._ping_coroutine:
            self._ping_coroutine.cancel()
            self._ping_coroutine = None

    def is_closing(self) -> bool:
        return (
            self.stream is None
            or self.stream.closed()
            or self.client_terminated
            or self.server_terminated
        )

    def start_pinging(self) -> None:
        # hixie-75/76 have no ping frame.
        if self._engine is not None and self._engine.has_ping:
            super().start_pinging()


class WebSocketHandler(_tws.WebSocketHandler):
    """Tornado's `~tornado.websocket.WebSocketHandler`, speaking every draft
    through polysocket's engine. Subclass it exactly like Tornado's."""

    #: Drafts this handler accepts (names such as ``"rfc6455"``, ``"hybi-08"``,
    #: ``"hybi-00"``, ``"hixie-75"``); None accepts all. Others are refused
    #: with 426 listing the accepted versions (400 for the drafts without a
    #: version number).
    allowed_drafts: Sequence[str] | None = None
    #: Unique in the cluster once open, when the process joined one
    #: (``join_cluster``); 0 otherwise.
    connection_id: int = 0
    _cluster: _tornado_cluster.TornadoCluster | None = None

    @property
    def draft(self) -> str | None:
        """The draft the client speaks (``"rfc6455"``, ``"hixie-76"``...),
        once the connection is open."""
        conn = self.ws_connection
        return conn.draft if isinstance(conn, _EngineProtocol) else None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        drafts = self.allowed_drafts
        if drafts is not None and (isinstance(drafts, str) or not all(
            isinstance(d, str) for d in drafts
        )):
            raise TypeError(f"allowed_drafts must be a sequence of draft names, not {drafts!r}")
        if self.request.headers.get("Sec-WebSocket-Origin") and "Origin" not in self.request.headers:
            # hybi-04..10 name the browser origin Sec-WebSocket-Origin: let
            # Tornado's origin rules see it under the name they read.
            self.request.headers["Origin"] = self.request.headers["Sec-WebSocket-Origin"]
        await super().get(*args, **kwargs)

    def on_connection_close(self) -> None:
        if self._cluster is not None:
            self._cluster.closed(self.connection_id)
        super().on_connection_close()

    # ----------------------------------------------- the cluster (join_cluster)

    @staticmethod
    def _node() -> _tornado_cluster.TornadoCluster:
        cluster = _tornado_cluster.current()
        if cluster is None:
            raise RuntimeError("call polysocket.tornado.join_cluster() first")
        return cluster

    def join(self, group: str) -> None:
        """Add this connection to a group of the cluster (a local call)."""
        if self._cluster is None:
            raise RuntimeError("this connection did not open in a cluster (join_cluster)")
        self._cluster.node.join(self.connection_id, group)

    def leave(self, group: str) -> None:
        if self._cluster is not None:
            self._cluster.node.leave(self.connection_id, group)

    @classmethod
    def broadcast(cls, message: str | bytes | dict[str, Any], binary: bool = False) -> int:
        """Send one message to every connection of the cluster's namespace:
        this process's are written from here, encoded once per framing
        family; returns how many of them took it."""
        c = cls._node()
        if isinstance(message, dict):
            message = tornado.escape.json_encode(message)
        return c.write_all(list(c.handlers.values()), c.node.broadcast(message, binary))

    @classmethod
    def broadcast_group(
        cls, group: str, message: str | bytes | dict[str, Any], binary: bool = False
    ) -> int:
        """Send one message to every member of ``group`` on every node;
        returns how many local members took it."""
        c = cls._node()
        if isinstance(message, dict):
            message = tornado.escape.json_encode(message)
        return c.write_all(c.members(group), c.node.broadcast_group(group, message, binary))

    @classmethod
    def send_to(
        cls, connection_id: int, message: str | bytes | dict[str, Any], binary: bool = False
    ) -> None:
        """Send to a connection of any node: ``ValueError`` for what cannot be
        sent, ``WebSocketClosedError`` when no live node has it."""
        c = cls._node()
        if isinstance(message, dict):
            message = tornado.escape.json_encode(message)
        if c.node.owns(connection_id):
            c.local(connection_id).write_message(message, binary)
        else:
            c.node.send(connection_id, message, binary)

    @classmethod
    def ping_to(cls, connection_id: int, data: str | bytes | None = None) -> None:
        """Ping a connection of any node; errors as ``send_to``."""
        c = cls._node()
        if c.node.owns(connection_id):
            c.local(connection_id).ping(data or b"")
        else:
            c.node.ping(connection_id, data)

    @classmethod
    def close_to(cls, connection_id: int, code: int | None = None,
                 reason: str | None = None) -> bool:
        """Close a connection of any node: ``False`` when no live node has
        it, ``ValueError`` for a code or reason no draft may send."""
        c = cls._node()
        if not c.node.owns(connection_id):
            return c.node.close(connection_id, code, reason)
        try:
            c.local(connection_id).close(code, reason)
        except WebSocketClosedError:
            return False
        return True

    @classmethod
    def presence(cls, group: str | None = None) -> int:
        """Connections (or members of ``group``) on every live node."""
        return cls._node().node.presence(group)

    @classmethod
    def nodes(cls) -> list[int]:
        """The live node ids, this one included."""
        return cls._node().node.nodes()

    @classmethod
    def cluster_stats(cls) -> dict[str, Any]:
        """The bus's counters (docs/CLUSTER.md)."""
        return cls._node().node.stats()

    def get_websocket_protocol(self) -> _EngineProtocol | None:
        params = _tws._WebSocketParams(
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            max_message_size=self.max_message_size,
            compression_options=self.get_compression_options(),
        )
        return _EngineProtocol(self, params)


class WebSocketClientConnection(_tws.WebSocketClientConnection):
    """Tornado's client connection, speaking RFC 6455 through the engine
    (use `polysocket.connect` for the older drafts)."""

    def __init__(
        self,
        request: httpclient.HTTPRequest,
        on_message_callback: Callable[[None | str | bytes], None] | None = None,
        compression_options: dict[str, Any] | None = None,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        max_message_size: int = _tws._default_max_message_size,
        subprotocols: list[str] | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        url = urlsplit(request.url)
        self._handshake = _native.ClientHandshake(
            "rfc6455",
            url.netloc,
            (url.path or "/") + (f"?{url.query}" if url.query else ""),
            secure=url.scheme in ("wss", "https"),
            subprotocols=list(subprotocols or ()),
            max_message_size=max_message_size,
            compression_level=_compression_level(compression_options),
            extensions=["permessage-deflate"],
            auto_pong=False,
        )
        super().__init__(
            request,
            on_message_callback=on_message_callback,
            compression_options=compression_options,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_message_size=max_message_size,
            subprotocols=subprotocols,
            resolver=resolver,
        )
        # The request is sent by a task that starts on the next IOLoop turn:
        # until then its WebSocket headers can still become the engine's
        # (its key, its extension offer), which the answer is checked against.
        key = self._handshake.key
        self.request.headers["Sec-WebSocket-Key"] = key
        offer = self._handshake.extension_offer
        if offer is not None:
            self.request.headers["Sec-WebSocket-Extensions"] = offer
        else:
            self.request.headers.pop("Sec-WebSocket-Extensions", None)
        self.key = key.encode()
        self._taken: Future[None] | None = None

    def get_websocket_protocol(self) -> _EngineProtocol:
        return _EngineProtocol(self, self.params)

    def _on_message(self, message: None | str | bytes) -> Awaitable[None] | None:
        if self._on_message_callback is not None or message is None:
            return super()._on_message(message)
        return self._hand_over(message)

    async def _hand_over(self, message: str | bytes) -> None:
        """Queue a message for `read_message` and decode nothing further
        until it was read, and the reader had its turn: what the
        application sends in answer then goes out before any failure a
        later frame causes (Tornado's queue holds one message too)."""
        try:
            await self.read_queue.put(message)
            if self.read_queue.qsize():
                self._taken = Future()
                await self._taken
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            pass  # the IOLoop is shutting down with the message unread

    def read_message(
        self, callback: Callable[[Future[None | str | bytes]], None] | None = None
    ) -> Awaitable[None | str | bytes]:
        awaitable = super().read_message(callback)
        taken, self._taken = self._taken, None
        if taken is not None and not taken.done():
            taken.set_result(None)
        return awaitable


def websocket_connect(
    url: str | httpclient.HTTPRequest,
    callback: Callable[[Future[WebSocketClientConnection]], None] | None = None,
    connect_timeout: float | None = None,
    on_message_callback: Callable[[None | str | bytes], None] | None = None,
    compression_options: dict[str, Any] | None = None,
    ping_interval: float | None = None,
    ping_timeout: float | None = None,
    max_message_size: int = _tws._default_max_message_size,
    subprotocols: list[str] | None = None,
    resolver: Resolver | None = None,
) -> Awaitable[WebSocketClientConnection]:
    """Tornado's `~tornado.websocket.websocket_connect`: same signature and
    behaviour, returning an engine-backed `WebSocketClientConnection`."""
    if isinstance(url, httpclient.HTTPRequest):
        assert connect_timeout is None
        request = url
        # Copy and convert the headers dict/object (as Tornado does).
        request.headers = httputil.HTTPHeaders(request.headers)
    else:
        request = httpclient.HTTPRequest(url, connect_timeout=connect_timeout)
    request = cast(
        httpclient.HTTPRequest,
        httpclient._RequestProxy(request, httpclient.HTTPRequest._DEFAULTS),
    )
    conn = WebSocketClientConnection(
        request,
        on_message_callback=on_message_callback,
        compression_options=compression_options,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_message_size=max_message_size,
        subprotocols=subprotocols,
        resolver=resolver,
    )
    if callback is not None:
        warnings.warn(
            "The callback argument to websocket_connect is deprecated. "
            "Use the returned Future instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        IOLoop.current().add_future(conn.connect_future, callback)
    return conn.connect_future
