"""The standalone server: I/O, handshakes and framing in the Rust runtime,
handlers (``polysocket.WebSocketHandler``) on the caller's asyncio loop.

On polysocket's own loop (``polysocket.run``, ``serve``) the runtime runs
on the loop's thread and calls ``_event(kind, id, payload)`` for each event
from the task that read it. On any other loop (or with ``workers=N``) the
runtime has its own threads and queues events behind one descriptor;
``loop.add_reader`` wakes ``_on_readable`` once for any number of them, and
one ``drain()`` returns them all as the same tuples.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import re
import signal
import threading
import time
from functools import partial
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _native
from .handler import Request, WebSocketHandler, app_log
from .loop import EventLoop, run

__all__ = ["Server", "serve"]

# Event kinds of NativeServer.drain (python/src/server.rs).
OPEN, MESSAGE, PING, PONG, CLOSE = range(5)

# Close codes that mean "the peer's close frame had no code" (Tornado: None).
_NO_CODE = (1005, 1006)

Route = Union[Tuple[Any, type], Tuple[Any, type, Dict[str, Any]]]
Page = Union[str, bytes, Tuple[str, Union[str, bytes]]]


def _compile_routes(routes: Sequence[Route]) -> List[Tuple["re.Pattern[str]", type, Dict[str, Any]]]:
    if isinstance(routes, (str, bytes)) or not isinstance(routes, Iterable):
        raise TypeError("routes must be a list of (pattern, handler class[, kwargs])")
    compiled = []
    for route in routes:
        if not isinstance(route, (tuple, list)) or len(route) not in (2, 3):
            raise TypeError("a route is (pattern, handler class[, kwargs]), got %r" % (route,))
        pattern, cls = route[0], route[1]
        kwargs = route[2] if len(route) == 3 else {}
        if not (isinstance(cls, type) and issubclass(cls, WebSocketHandler)):
            raise TypeError("route %r: %r is not a subclass of polysocket.WebSocketHandler"
                            % (pattern, cls))
        if not isinstance(kwargs, Mapping):
            raise TypeError("route %r: kwargs must be a dict, got %r" % (pattern, kwargs))
        if isinstance(pattern, str):
            if not pattern.endswith("$"):
                pattern += "$"  # Tornado's rule: the whole path must match
            try:
                pattern = re.compile(pattern)
            except re.error as e:
                raise ValueError("route %r: invalid regular expression: %s" % (route[0], e)) from None
        elif not isinstance(pattern, re.Pattern):
            raise TypeError("route pattern must be a str or compiled regex, got %r" % (pattern,))
        compiled.append((pattern, cls, dict(kwargs)))
    if not compiled:
        raise ValueError("routes is empty")
    return compiled


def _compile_pages(pages: Optional[Mapping[str, Page]]) -> Dict[str, Tuple[str, bytes]]:
    out = {}
    for path, page in (pages or {}).items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError("page path must start with '/', got %r" % (path,))
        ctype, body = page if isinstance(page, tuple) else ("text/html; charset=utf-8", page)
        if isinstance(body, str):
            body = body.encode("utf-8")
        if not isinstance(body, bytes):
            raise TypeError("page %r: body must be str or bytes" % path)
        out[path] = (ctype, body)
    return out


class Server:
    """A WebSocket server on ``host:port``.

    ``routes``: Tornado-style ``[(regex, HandlerClass[, kwargs]), ...]``,
    matched against the request path. ``pages``: ``{path: html}`` (or
    ``{path: (content_type, body)}``) answered to plain HTTP GETs.
    ``settings``: what handlers see as ``self.settings``. Other keyword
    arguments are limits and policy (see ``polysocket._native.ServerOptions``):
    max_connections, max_connections_per_ip, max_messages_per_minute,
    max_message_size, handshake_timeout, ping_interval, ping_timeout,
    max_send_buffer, close_timeout, allowed_origins, drafts, compression,
    ssl_certfile, ssl_keyfile, workers (runtime threads; 0, the default:
    the loop's own thread on polysocket's loop, one per core on others).
    """

    def __init__(self, routes: Sequence[Route], host: str = "127.0.0.1", port: int = 8888, *,
                 pages: Optional[Mapping[str, Page]] = None,
                 settings: Optional[Dict[str, Any]] = None, **options: Any) -> None:
        if not isinstance(host, str):
            raise TypeError("host must be a str, got %r" % (host,))
        if not isinstance(port, int) or isinstance(port, bool):
            raise TypeError("port must be an int, got %r" % (port,))
        if not 0 <= port <= 65535:
            raise ValueError("port must be in 0..65535, got %d" % port)
        self.routes = _compile_routes(routes)
        self.options = _native.ServerOptions(**options)
        self.pages = _compile_pages(pages)
        self.settings = dict(settings or {})
        self.host, self.port = host, port
        self._native: Optional[_native.NativeServer] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._handlers: Dict[int, WebSocketHandler] = {}
        # Handlers made while deciding a handshake (on a runtime thread),
        # by handshake key, until their connection opens.
        self._pending: Dict[str, collections.deque] = {}
        self._pending_lock = threading.Lock()
        self._last_sweep = time.monotonic()
        self._stop_requested: Optional[asyncio.Event] = None
        self._inline = False

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> "Server":
        """Bind and serve; call from the running asyncio loop."""
        if self._native is not None:
            raise RuntimeError("server already started")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop_requested = asyncio.Event()
        if isinstance(loop, EventLoop) and self.options.workers == 0:
            self._native = _native.NativeServer(self.options, self.host, self.port, self._accept,
                                                self.pages, loop.reactor, self)
            self._inline = True
        else:
            self._native = _native.NativeServer(self.options, self.host, self.port, self._accept,
                                                self.pages)
            self._inline = False
            loop.add_reader(self._native.fileno(), self._on_readable)
        self.host, self.port = self._native.address
        return self

    @property
    def address(self) -> Tuple[str, int]:
        return self.host, self.port

    @property
    def handlers(self) -> List[WebSocketHandler]:
        """The handlers of the open connections."""
        return list(self._handlers.values())

    def request_stop(self) -> None:
        """Make ``serve_forever`` return (after a graceful stop)."""
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def stop(self) -> None:
        """Graceful stop: no new connections, close 1001 to every open one,
        wait for their close handshakes, run every ``on_close``."""
        native = self._native
        if native is None:
            return
        self.request_stop()
        native.stop()
        if self._inline:
            # The runtime runs while this loop waits: poll for the end.
            while native.connection_count():
                await asyncio.sleep(0.005)
        else:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, native.wait)
            self._on_readable()
            loop.remove_reader(native.fileno())
            await loop.run_in_executor(None, native.close)
        self._native = None

    async def serve_forever(self) -> None:
        """Serve until ``request_stop()``, SIGINT or SIGTERM, then stop
        gracefully."""
        if self._native is None:
            self.start()
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_stop)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread, or no signals on this platform
        try:
            await self._stop_requested.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.stop()

    async def __aenter__(self) -> "Server":
        return self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # --- sending to many -------------------------------------------------------------------
    def broadcast(self, targets: Iterable[Union[WebSocketHandler, int]], message: Any,
                  binary: bool = False) -> int:
        """Send one message to many connections (handlers or ids), encoded
        once. Returns how many it was queued for."""
        ids = [t if type(t) is int else t.connection_id for t in targets]
        return self._native.broadcast(ids, message, binary)

    def broadcast_group(self, group: str, message: Any, binary: bool = False) -> int:
        """Send one message to every member of a group (``handler.join``)."""
        return self._native.broadcast_group(group, message, binary)

    def members(self, group: str) -> List[WebSocketHandler]:
        h = self._handlers
        return [h[i] for i in self._native.members(group) if i in h]

    # --- handshakes (called on a runtime thread, with the GIL) ---------------------------------
    def _accept(self, key: str, path: str, query: str, headers: List[Tuple[str, str]],
                offered: List[str], secure: bool) -> Union[None, str, Tuple[int, str]]:
        try:
            for regex, cls, kwargs in self.routes:
                match = regex.match(path)
                if match:
                    break
            else:
                return 404, "Not Found"
            request = Request(path, query, headers, secure)
            handler = cls(self, request, **kwargs)
            if regex.groupindex:
                handler.path_kwargs = {k: v for k, v in match.groupdict().items() if v is not None}
            else:
                handler.path_args = [g for g in match.groups() if g is not None]
            origin = request.header("Origin") or request.header("Sec-WebSocket-Origin")
            if not handler._allows(origin):
                return 403, "Cross origin websockets not allowed"
            chosen = handler.select_subprotocol(list(offered))
            if chosen is not None and chosen not in offered:
                app_log.error("%s.select_subprotocol returned %r, which was not offered (%r)",
                              cls.__name__, chosen, offered)
                return 500, "Internal Server Error"
            handler.selected_subprotocol = chosen
            self._park(key, handler)
            return chosen
        except Exception:
            app_log.exception("Uncaught exception while accepting %s", path)
            return 500, "Internal Server Error"

    def _park(self, key: str, handler: WebSocketHandler) -> None:
        now = time.monotonic()
        with self._pending_lock:
            self._pending.setdefault(key, collections.deque()).append((now, handler))
            # Handshakes accepted here can still fail before they open (the
            # client vanished): forget handlers older than any handshake.
            if now - self._last_sweep > 10.0:
                self._last_sweep = now
                too_old = now - 60.0
                for k in [k for k, q in self._pending.items() if q[0][0] < too_old]:
                    q = self._pending[k]
                    while q and q[0][0] < too_old:
                        q.popleft()
                    if not q:
                        del self._pending[k]

    def _unpark(self, key: str) -> Optional[WebSocketHandler]:
        with self._pending_lock:
            q = self._pending.get(key)
            if not q:
                return None
            _, handler = q.popleft()
            if not q:
                del self._pending[key]
            return handler

    # --- events (on the loop) ---------------------------------------------------------------
    def _on_readable(self) -> None:
        event = self._event
        for kind, cid, data in self._native.drain():
            event(kind, cid, data)

    def _event(self, kind: int, cid: int, data: Any) -> None:
        """One event. (Inline, a message whose handler is not held by a
        coroutine goes to ``on_message`` from Rust without coming here.)"""
        if kind == OPEN:
            self._open(cid, data)
            return
        h = self._handlers.get(cid)
        if h is None:
            return
        if kind == CLOSE:
            del self._handlers[cid]
            h._detach()
        if h._backlog is not None:
            h._backlog.append((kind, data))
        else:
            self._run(h, kind, data)

    def _open(self, cid: int, info: Tuple[Any, ...]) -> None:
        key, ip, port, draft, subprotocol, extension, _secure = info
        h = self._unpark(key)
        if h is None:  # cannot happen unless the handshake key collided badly
            app_log.error("no handler for connection %d (%s)", cid, key)
            orphan = _native.Connection()
            orphan._attach(self._native, cid)
            orphan.close(1011, "Internal Server Error")
            return
        h._attach(self._native, cid)
        h.request.remote_ip, h.request.peer_port = ip, port
        h.draft, h.extension = draft, extension
        if subprotocol is not None:
            h.selected_subprotocol = subprotocol
        self._handlers[cid] = h
        try:
            r = h.open(*h.path_args, **h.path_kwargs)
        except Exception:
            self._failed(h)
            return
        if r is not None:
            self._maybe_await(h, r)

    def _run(self, h: WebSocketHandler, kind: int, data: Any) -> None:
        """Deliver one event; an awaitable result holds the connection's
        next events until it completes."""
        try:
            if kind == MESSAGE:
                r = h.on_message(data)
            elif kind == CLOSE:
                code, reason = data
                h.close_code = None if code in _NO_CODE else code
                h.close_reason = reason if h.close_code is not None or reason else None
                r = h.on_close()
            elif kind == PING:
                r = h.on_ping(data)
            else:
                r = h.on_pong(data)
        except Exception:
            self._failed(h)
            return
        if r is not None:
            self._maybe_await(h, r)

    def _maybe_await(self, h: WebSocketHandler, r: Any) -> None:
        if not inspect.isawaitable(r):
            return
        h._backlog = collections.deque()
        task = asyncio.ensure_future(r)
        task.add_done_callback(partial(self._resume, h))

    def _resume(self, h: WebSocketHandler, task: "asyncio.Future[Any]") -> None:
        if task.cancelled() or task.exception() is not None:
            self._failed(h, task)
        backlog, h._backlog = h._backlog, None
        while backlog:
            kind, data = backlog.popleft()
            self._run(h, kind, data)
            if h._backlog is not None:  # waiting again: keep the rest in order
                h._backlog.extend(backlog)
                return

    def _failed(self, h: WebSocketHandler, task: Optional["asyncio.Future[Any]"] = None,
                exc: Optional[BaseException] = None) -> None:
        """A handler raised (the exception being handled, ``exc``, or the
        task's): log it with its traceback, close with 1011."""
        if exc is not None:
            h.log_exception(type(exc), exc, exc.__traceback__)
        elif task is None:
            import sys
            h.log_exception(*sys.exc_info())
        elif task.cancelled():
            app_log.error("Handler coroutine of %s was cancelled", h.request.uri)
        else:
            e = task.exception()
            h.log_exception(type(e), e, e.__traceback__)
        h.close(1011, "Internal Server Error")


def serve(routes: Sequence[Route], host: str = "127.0.0.1", port: int = 8888,
          **kwargs: Any) -> None:
    """Run a server until SIGINT or SIGTERM, then stop it gracefully (every
    connection is closed with 1001). Blocks; runs polysocket's own asyncio
    loop (``polysocket.run``)."""
    server = Server(routes, host, port, **kwargs)
    run(server.serve_forever())
