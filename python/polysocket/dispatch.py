"""The standalone server's one dispatcher: how each event of a connection
reaches its handler, whichever way the server runs.

``NativeServer`` (python/src/server.rs) is built with a ``Dispatcher`` and
calls only the entry points below; it checks them when it is built.

* ``accept(id, path, query, headers, offered, secure, http2)``: decide the
  handshake of connection ``id`` (on a runtime thread, with the GIL);
  ``http2``: it is an HTTP/2 stream (RFC 8441's extended CONNECT).
  Returns ``None`` or the chosen subprotocol to accept, ``(status, reason)``
  to refuse. The handler made here is kept under ``id`` until the
  connection opens.
* ``handshake_failed(id)``: a handshake accepted under ``id`` never opened
  (the client vanished, the response could not be written): its handler
  is dropped.
* ``event(kind, id, payload)``: any event of an open connection (see
  ``OPEN`` ... ``CLOSE``). Threaded, every drained event comes here.
* ``ready``: ``{id: handler}`` of the open connections whose next message
  may go straight to ``handler.on_message`` (no coroutine of theirs is
  running). Inline, a message for an id in ``ready`` costs one Python call:
  ``on_message(payload)``; a result other than ``None`` then goes to
  ``returned(handler, result)``, an ``Exception`` it raised to
  ``failed(handler, exc)``. A message for any other id goes to ``event``.
* ``returned(handler, result)``: an awaitable result holds the
  connection's next events until it completes.
* ``failed(handler, exc)``: a handler raised: logged, the connection is
  closed with 1011.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
from functools import partial
from typing import Any, Callable, Deque, Dict, List, Tuple, Union

from .handler import WebSocketHandler, app_log

__all__ = ["Dispatcher", "OPEN", "MESSAGE", "PING", "PONG", "CLOSE"]

# Event kinds (python/src/server.rs).
OPEN, MESSAGE, PING, PONG, CLOSE = range(5)

# Close codes that mean "the peer's close frame had no code" (Tornado: None).
_NO_CODE = (1005, 1006)

Decision = Union[None, str, Tuple[int, str]]
#: Builds the handler of a handshake, or says why not: ``(status, reason)``.
Make = Callable[[str, str, List[Tuple[str, str]], List[str], bool, bool],
                Union[WebSocketHandler, Tuple[int, str]]]


class Dispatcher:
    """Handlers by connection id, and the policy that runs them."""

    def __init__(self, make: Make) -> None:
        self._make = make
        self.native: Any = None  # the NativeServer, set once it is built
        #: Handlers of the open connections, by id.
        self.handlers: Dict[int, WebSocketHandler] = {}
        #: See the module: handlers that take a message directly.
        self.ready: Dict[int, WebSocketHandler] = {}
        # Handlers made while deciding a handshake, until it opens or fails.
        self._pending: Dict[int, WebSocketHandler] = {}
        # Events of a connection held while a coroutine of its handler runs.
        self._held: Dict[int, Deque[Tuple[int, Any]]] = {}

    # --- handshakes (on a runtime thread, with the GIL) -----------------------------------
    def accept(self, cid: int, path: str, query: str, headers: List[Tuple[str, str]],
               offered: List[str], secure: bool, http2: bool) -> Decision:
        try:
            made = self._make(path, query, headers, offered, secure, http2)
        except Exception:
            app_log.exception("Uncaught exception while accepting %s", path)
            return 500, "Internal Server Error"
        if isinstance(made, tuple):
            return made
        self._pending[cid] = made
        return made.selected_subprotocol

    def handshake_failed(self, cid: int) -> None:
        self._pending.pop(cid, None)

    # --- events (on the loop) ---------------------------------------------------------------
    def event(self, kind: int, cid: int, data: Any) -> None:
        if kind == OPEN:
            self._open(cid, data)
            return
        h = self.handlers.get(cid)
        if h is None:
            return
        if kind == CLOSE:
            del self.handlers[cid]
            self.ready.pop(cid, None)
            h._detach()
        held = self._held.get(cid)
        if held is not None:
            held.append((kind, data))
        else:
            self._run(h, kind, data)

    def _open(self, cid: int, info: Tuple[Any, ...]) -> None:
        ip, port, draft, subprotocol, extension, _secure = info
        h = self._pending.pop(cid)  # accept ran for every id that opens
        h._attach(self.native, cid)
        h.request.remote_ip, h.request.peer_port = ip, port
        h.draft, h.extension = draft, extension
        if subprotocol is not None:
            h.selected_subprotocol = subprotocol
        self.handlers[cid] = self.ready[cid] = h
        try:
            r = h.open(*h.path_args, **h.path_kwargs)
        except Exception as e:
            self.failed(h, e)
            return
        if r is not None:
            self.returned(h, r)

    def _run(self, h: WebSocketHandler, kind: int, data: Any) -> None:
        """Deliver one event to ``h``."""
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
        except Exception as e:
            self.failed(h, e)
            return
        if r is not None:
            self.returned(h, r)

    def returned(self, h: WebSocketHandler, result: Any) -> None:
        if not inspect.isawaitable(result):
            return
        cid = h.connection_id
        self.ready.pop(cid, None)
        self._held[cid] = collections.deque()
        task = asyncio.ensure_future(result)
        task.add_done_callback(partial(self._resume, h))

    def _resume(self, h: WebSocketHandler, task: "asyncio.Future[Any]") -> None:
        if task.cancelled():
            app_log.error("Handler coroutine of %s was cancelled", h.request.uri)
            h.close(1011, "Internal Server Error")
        elif task.exception() is not None:
            self.failed(h, task.exception())
        cid = h.connection_id
        held = self._held.pop(cid)
        while held:
            kind, data = held.popleft()
            self._run(h, kind, data)
            if cid in self._held:  # waiting again: keep the rest in order
                self._held[cid].extend(held)
                return
        if cid in self.handlers:
            self.ready[cid] = h

    def failed(self, h: WebSocketHandler, exc: BaseException) -> None:
        h.log_exception(type(exc), exc, exc.__traceback__)
        h.close(1011, "Internal Server Error")
