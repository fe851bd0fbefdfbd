"""The standalone server: I/O, handshakes and framing in the Rust runtime,
handlers (``polysocket.WebSocketHandler``) on the caller's asyncio loop.

On polysocket's own loop (``polysocket.run``, ``serve``) the runtime runs
on the loop's thread and hands each event to the server's ``Dispatcher``
(``polysocket.dispatch``) from the task that read it. On any other loop (or
with ``workers=N``) the runtime has its own threads and queues events behind
one descriptor; ``loop.add_reader`` wakes ``_on_readable`` once for any
number of them, and one ``drain()`` returns them all, for the same
dispatcher.
"""

from __future__ import annotations

import asyncio
import re
import signal
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _native
from .dispatch import Dispatcher
from .handler import Http2Request, Request, WebSocketHandler, app_log
from .loop import EventLoop, run

__all__ = ["Server", "serve"]

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
    max_send_buffer, max_buffered_total (bytes all connections may hold for
    their clients; past it the connection asking for more is closed with
    1013), close_timeout, allowed_origins, drafts, compression, ssl_certfile,
    ssl_keyfile, ssl_certificates (SNI: ``[(server_names, certfile, keyfile),
    ...]`` served to clients asking for one of those names, the ssl_certfile
    one to every other; ``reload_tls()`` or SIGHUP re-reads them), workers (runtime threads; 0, the default:
    the loop's own thread on polysocket's loop, one per core on others),
    reuse_port (``SO_REUSEPORT``: several processes share the port).

    HTTP/2 (RFC 8441, docs/PYTHON.md): with TLS, ALPN offers ``h2`` first,
    so a browser opens its WebSockets as streams of one connection
    (``request.version == "HTTP/2.0"``); each stream counts as a connection
    for the limits. ``http2=False`` offers HTTP/1.1 only;
    ``http2_max_streams`` (default 100) bounds the streams one connection
    may have open at once (more are refused with ``REFUSED_STREAM``);
    ``http2_max_pending_resets`` (default 20, at least 1) the streams a
    client may reset before the server took them up ("rapid reset",
    CVE-2023-44487): past it the connection is closed with ``GOAWAY``
    (``ENHANCE_YOUR_CALM``).

    Behind a proxy (docs/OPERATIONS.md): ``trusted_proxies=["10.0.0.0/8",
    "127.0.0.1"]`` believes those addresses' ``Forwarded`` /
    ``X-Forwarded-For`` headers, or with ``proxy_protocol=True`` their PROXY
    protocol header (v1 or v2; required on every connection, from them
    only). ``request.remote_ip`` and the per-IP limit then use the client's
    address. A bad entry is a ``ValueError`` naming it.

    Rolling restarts (docs/OPERATIONS.md): with ``reuse_port=True`` a new
    process starts on the port, then SIGTERM (or ``request_drain()``) makes
    this one close its listening socket and serve its open connections for
    up to ``drain_timeout`` seconds (0, the default: none), then close the
    rest with 1001. SIGINT, or a second SIGTERM, stops at once.

    Metrics (docs/OPERATIONS.md, "Metrics"): ``stats()`` any time;
    ``metrics=True`` answers ``GET /metrics`` on the server's port in
    Prometheus' text format, ``metrics_port=N`` on a port of its own
    instead (0: a free one, see ``metrics_address``).

    ``cluster="redis://host:port"`` with ``namespace="chat"``: one broadcast
    and group namespace, connection ids and presence shared with every
    server of the namespace on that Redis (docs/CLUSTER.md); limits
    cluster_heartbeat, cluster_expiry (seconds), cluster_queue. A bad URL
    or namespace is a ``ValueError`` here.
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
        self._dispatcher = Dispatcher(self._make)
        self._stop_requested: Optional[asyncio.Event] = None
        self._draining = False
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
            self._native = _native.NativeServer(self.options, self.host, self.port,
                                                self._dispatcher, self.pages, loop.reactor)
            self._inline = True
        else:
            self._native = _native.NativeServer(self.options, self.host, self.port,
                                                self._dispatcher, self.pages)
            self._inline = False
        self._dispatcher.native = self._native
        for _, cls, _ in self.routes:
            cls._served_by = self
        node = self._native.node_id
        if node is not None:
            app_log.info("cluster: node %d on %s:%d", node, self.host, self._native.address[1])
        if not self._inline:
            loop.add_reader(self._native.fileno(), self._on_readable)
        self.host, self.port = self._native.address
        return self

    @property
    def address(self) -> Tuple[str, int]:
        return self.host, self.port

    @property
    def handlers(self) -> List[WebSocketHandler]:
        """The handlers of the open connections."""
        return list(self._dispatcher.handlers.values())

    def request_stop(self) -> None:
        """Make ``serve_forever`` return (after a graceful stop)."""
        if self._stop_requested is not None:
            self._stop_requested.set()

    def request_drain(self) -> None:
        """Make ``serve_forever`` return after a drain: no new connections
        (the listening socket is closed: another process on the port takes
        them), the open ones served until they end or ``drain_timeout``
        passes, then 1001 to the rest. A second request stops at once."""
        native = self._native
        if native is None or self._draining:
            self.request_stop()
            return
        self._draining = True
        native.begin_drain()
        app_log.info("draining: %d connections left, at most %gs",
                     native.connection_count(), self.options.drain_timeout)
        asyncio.ensure_future(self._drained(native))

    async def _drained(self, native: "_native.NativeServer") -> None:
        # The runtime stops by itself once the last connection ended (its
        # own, or after the 1001s at the timeout).
        while native.connection_count():
            await asyncio.sleep(0.02)
        self.request_stop()

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

    def stats(self) -> Dict[str, Any]:
        """The server's metrics now: ``connections`` (open), ``by_draft``
        and ``by_extension`` (open connections by draft name and by
        compression extension, ``"none"`` without), ``by_http_version``
        (``"1.1"``, or ``"2"`` for HTTP/2 streams), ``handshakes_accepted``,
        ``handshakes_refused`` ({HTTP status: count}), ``messages_in``,
        ``bytes_in``, ``messages_out``, ``bytes_out`` (data messages and
        their payload bytes), ``closes`` ({close code: count}), ``limits``
        ({limit name: times it refused or closed a connection}),
        ``buffered_bytes`` and ``cluster`` (the bus's counters, or None)."""
        if self._native is None:
            raise RuntimeError("server not started")
        return self._native.stats()

    @property
    def metrics_address(self) -> Optional[Tuple[str, int]]:
        """``(host, port)`` where ``metrics_port`` is served, or None."""
        return None if self._native is None else self._native.metrics_address

    def reload_tls(self) -> None:
        """Read the certificate and key files again: new handshakes get the
        new certificates, open connections carry on. A broken, missing or
        mismatched file raises ``ValueError`` naming it, and the old
        certificates stay; ``RuntimeError`` when not serving ``wss://``."""
        if self._native is None:
            raise RuntimeError("server not started")
        self._native.reload_tls()
        app_log.info("TLS certificates reloaded")

    def _reload_on_signal(self) -> None:
        try:
            self.reload_tls()
        except (ValueError, RuntimeError) as e:
            app_log.error("TLS certificates not reloaded (the old ones stay): %s", e)

    async def serve_forever(self) -> None:
        """Serve until ``request_stop()`` or SIGINT, then stop gracefully;
        SIGTERM drains first (``request_drain()``; without a
        ``drain_timeout`` that is the same stop). With TLS, SIGHUP reloads
        the certificates."""
        if self._native is None:
            self.start()
        loop = asyncio.get_running_loop()
        installed = []
        handlers: List[Tuple[int, Callable[[], None]]] = [
            (signal.SIGINT, self.request_stop), (signal.SIGTERM, self.request_drain)]
        if self.options.secure and hasattr(signal, "SIGHUP"):
            handlers.append((signal.SIGHUP, self._reload_on_signal))
        for sig, handler in handlers:
            try:
                loop.add_signal_handler(sig, handler)
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
        """Send one message to many connections (handlers or ids; clustered,
        ids of other nodes too), encoded once. Returns how many local ones
        it was queued for."""
        ids = [t if type(t) is int else t.connection_id for t in targets]
        return self._native.broadcast(ids, message, binary)

    def broadcast_group(self, group: str, message: Any, binary: bool = False) -> int:
        """Send one message to every member of a group (``handler.join``),
        on every node when clustered. Returns how many local members it was
        queued for."""
        return self._native.broadcast_group(group, message, binary)

    def members(self, group: str) -> List[WebSocketHandler]:
        h = self._dispatcher.handlers
        return [h[i] for i in self._native.members(group) if i in h]

    # --- handshakes (called on a runtime thread, with the GIL) ---------------------------------
    def _make(self, path: str, query: str, headers: List[Tuple[str, str]], offered: List[str],
              secure: bool, http2: bool) -> Union[WebSocketHandler, Tuple[int, str]]:
        """The handler of a handshake (routing, ``initialize``,
        ``check_origin``, ``select_subprotocol``), or ``(status, reason)``."""
        for regex, cls, kwargs in self.routes:
            match = regex.match(path)
            if match:
                break
        else:
            return 404, "Not Found"
        request = (Http2Request if http2 else Request)(path, query, headers, secure)
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
        return handler

    # --- events (threaded: on the loop, from the event queue) -----------------------------------
    def _on_readable(self) -> None:
        event = self._dispatcher.event
        for kind, cid, data in self._native.drain():
            event(kind, cid, data)


def serve(routes: Sequence[Route], host: str = "127.0.0.1", port: int = 8888,
          **kwargs: Any) -> None:
    """Run a server until SIGINT or SIGTERM, then stop it gracefully (every
    connection is closed with 1001; with TLS, SIGHUP reloads the certificates).
    Blocks; runs polysocket's own asyncio
    loop (``polysocket.run``)."""
    server = Server(routes, host, port, **kwargs)
    run(server.serve_forever())
