"""The handler API of the standalone server: Tornado's ``WebSocketHandler``.

A handler class is instantiated once per connection, while its handshake is
decided (``initialize``, ``check_origin``, ``select_subprotocol``); ``open``,
``on_message``, ``on_ping``, ``on_pong`` and ``on_close`` then run on the
asyncio loop that started the server. Any of them may be a coroutine: the
next event of that connection waits until it finished.

``write_message``, ``ping`` and ``close`` are native (``_native.Connection``):
they hand bytes to the Rust runtime without waiting; ``write_message``
returns an awaitable that is already complete (back-pressure is the
server's ``max_send_buffer``).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qs, urlsplit

from tornado.httputil import HTTPHeaders
from tornado.websocket import WebSocketClosedError

from . import _native

__all__ = ["WebSocketHandler", "WebSocketClosedError", "Request"]

app_log = logging.getLogger("polysocket")

_ARG_DEFAULT: Any = object()


class Request:
    """The opening request, shaped like Tornado's ``HTTPServerRequest``."""

    __slots__ = ("path", "query", "_raw_headers", "_headers", "_arguments",
                 "remote_ip", "protocol", "peer_port")

    method = "GET"
    #: Tornado's name of the HTTP version ("HTTP/2.0" on an HTTP/2 stream,
    #: see ``Http2Request``): a class attribute, no per-request slot.
    version = "HTTP/1.1"

    def __init__(self, path: str, query: str, headers: Sequence[Tuple[str, str]], secure: bool):
        self.path = path
        self.query = query
        self._raw_headers = headers
        self._headers: Optional[HTTPHeaders] = None
        self._arguments: Optional[Dict[str, List[bytes]]] = None
        self.protocol = "https" if secure else "http"
        self.remote_ip: Optional[str] = None
        self.peer_port: Optional[int] = None

    def header(self, name: str) -> Optional[str]:
        """The first value of a header (case-insensitive), without building
        the ``headers`` object."""
        name = name.lower()
        for k, v in self._raw_headers:
            if k.lower() == name:
                return v
        return None

    @property
    def headers(self) -> HTTPHeaders:
        if self._headers is None:
            h = HTTPHeaders()
            for k, v in self._raw_headers:
                h.add(k, v)
            self._headers = h
        return self._headers

    @property
    def uri(self) -> str:
        return self.path + ("?" + self.query if self.query else "")

    @property
    def host(self) -> str:
        return self.header("Host") or "127.0.0.1"

    @property
    def arguments(self) -> Dict[str, List[bytes]]:
        if self._arguments is None:
            self._arguments = {k: [x.encode() for x in v] for k, v in
                               parse_qs(self.query, keep_blank_values=True).items()}
        return self._arguments

    query_arguments = arguments

    def full_url(self) -> str:
        scheme = "wss" if self.protocol == "https" else "ws"
        return "%s://%s%s" % (scheme, self.host, self.uri)

    def __repr__(self) -> str:
        return "Request(path=%r, remote_ip=%r)" % (self.path, self.remote_ip)


class Http2Request(Request):
    """The opening request of a WebSocket on an HTTP/2 stream (RFC 8441)."""

    __slots__ = ()
    version = "HTTP/2.0"


class WebSocketHandler(_native.Connection):
    """Subclass and override ``on_message`` (and optionally the others)."""

    close_code: Optional[int] = None
    close_reason: Optional[str] = None
    selected_subprotocol: Optional[str] = None
    #: The draft the client speaks ("rfc6455", "hybi-08", "hixie-76", ...).
    draft: Optional[str] = None
    #: The compression extension in force, if any.
    extension: Optional[str] = None

    def __init__(self, application: Any, request: Request, **kwargs: Any) -> None:
        self.application = application
        self.request = request
        self.path_args: List[str] = []
        self.path_kwargs: Dict[str, str] = {}
        self.initialize(**kwargs)

    # --- hooks -----------------------------------------------------------------
    def initialize(self, **kwargs: Any) -> None:
        """Receives the route's keyword arguments."""

    def open(self, *args: str, **kwargs: str) -> Any:
        """The connection is open; receives the route's groups."""

    def on_message(self, message: Any) -> Any:
        """A message arrived: ``str`` for text, ``bytes`` for binary. Every
        handler must override it (Tornado's contract: the base raises)."""
        raise NotImplementedError

    def on_ping(self, data: bytes) -> None:
        """A ping arrived (the pong is already sent)."""

    def on_pong(self, data: bytes) -> None:
        """A pong arrived."""

    def on_close(self) -> None:
        """The connection is gone (called exactly once per opened one)."""

    def check_origin(self, origin: str) -> bool:
        """Called for cross-origin requests only (Tornado 6.6 rules): true
        if ``origin`` is in the ``trusted_origins`` setting."""
        return origin in self.settings.get("trusted_origins", ())

    def select_subprotocol(self, subprotocols: List[str]) -> Optional[str]:
        return None

    def get_compression_options(self) -> Optional[Dict[str, Any]]:
        """Compression is a server option here (``compression=``)."""
        return None

    # --- facilities --------------------------------------------------------------
    @property
    def settings(self) -> Dict[str, Any]:
        return getattr(self.application, "settings", {})

    def join(self, group: str) -> None:
        """Add this connection to a broadcast group of the server."""
        self.application._native.join(self.connection_id, group)

    def leave(self, group: str) -> None:
        self.application._native.leave(self.connection_id, group)

    # --- class-level: every connection of the server, or of its cluster ------------
    #: The ``Server`` serving this class, set when it starts (the last one
    #: started, if several serve it).
    _served_by: Any = None

    @classmethod
    def _server(cls) -> "_native.NativeServer":
        native = getattr(cls._served_by, "_native", None)
        if native is None:
            raise RuntimeError("%s is not served by a running polysocket.Server" % cls.__name__)
        return native

    @classmethod
    def broadcast(cls, message: Any, binary: bool = False) -> int:
        """Send one message to every open connection of the server and,
        when clustered, of every node of the namespace. Returns how many
        local connections it was queued for."""
        return cls._server().broadcast_all(message, binary)

    @classmethod
    def broadcast_group(cls, group: str, message: Any, binary: bool = False) -> int:
        """Send one message to every member of ``group``, on every node when
        clustered. Returns how many local members it was queued for."""
        return cls._server().broadcast_group(group, message, binary)

    @classmethod
    def send_to(cls, connection_id: int, message: Any, binary: bool = False) -> None:
        """Send to a connection by id, on this node or another. Raises
        ``ValueError`` for what cannot be sent and ``WebSocketClosedError``
        when no live node has the connection. For another node's
        connection, success means handed to the bus (at most once)."""
        cls._server().send_to(connection_id, message, binary)

    @classmethod
    def ping_to(cls, connection_id: int, data: Union[str, bytes, None] = None) -> None:
        """Ping a connection by id; errors as ``send_to``."""
        cls._server().ping_to(connection_id, data)

    @classmethod
    def close_to(cls, connection_id: int, code: Optional[int] = None,
                 reason: Optional[str] = None) -> bool:
        """Close a connection by id. ``ValueError`` for a code or reason no
        draft may send; ``False`` when no live node has the connection."""
        return cls._server().close_to(connection_id, code, reason)

    @classmethod
    def presence(cls, group: Optional[str] = None) -> int:
        """Open connections (or members of ``group``) on every live node."""
        return cls._server().presence(group)

    @classmethod
    def nodes(cls) -> List[int]:
        """The live node ids of the cluster, this one included ([] when
        not clustered)."""
        return cls._server().nodes()

    @classmethod
    def cluster_stats(cls) -> Optional[Dict[str, Any]]:
        """The bus's counters (docs/CLUSTER.md), ``None`` when not clustered."""
        return cls._server().cluster_stats()

    def set_nodelay(self, value: bool) -> None:
        """Always on: the runtime writes each batch at once."""

    def get_argument(self, name: str, default: Any = _ARG_DEFAULT, strip: bool = True) -> Any:
        values = self.get_arguments(name, strip)
        if values:
            return values[-1]
        if default is _ARG_DEFAULT:
            from tornado.web import MissingArgumentError
            raise MissingArgumentError(name)
        return default

    def get_arguments(self, name: str, strip: bool = True) -> List[str]:
        values = [v.decode("utf-8", "replace") for v in self.request.arguments.get(name, [])]
        return [v.strip() for v in values] if strip else values

    get_query_argument = get_argument
    get_query_arguments = get_arguments

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        app_log.error("Uncaught exception in %s %s (%s)", type(self).__name__,
                      self.request.uri, self.request.remote_ip, exc_info=(typ, value, tb))

    # --- used by the server -------------------------------------------------------
    def _allows(self, origin: Optional[str]) -> bool:
        """Tornado 6.6's cross-origin rule around ``check_origin``."""
        if origin is None:
            return True
        fetch_site = self.request.header("Sec-Fetch-Site")
        if fetch_site is not None:
            if fetch_site.lower() == "same-origin":
                return True
        elif urlsplit(origin).netloc.lower() == self.request.host.lower():
            return True
        return bool(self.check_origin(origin))
