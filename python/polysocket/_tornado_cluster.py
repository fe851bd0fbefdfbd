"""The Tornado drop-in in a cluster (docs/TORNADO.md, "Cluster").

The drop-in's sockets are Tornado IOStreams, so the bus cannot write to
them: core's cluster ``Node`` (``_native.ClusterNode``) runs the bus on its
own thread and queues what other nodes send behind one descriptor, which
wakes the IOLoop (``add_handler``); one ``drain()`` there returns every
queued delivery. A broadcast arrives as a ``Prepared`` message, encoded at
most once per framing family however many connections take it, and is
written to each local connection from the IOLoop.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional

from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.log import gen_log
from tornado.websocket import WebSocketClosedError

from . import _native

__all__ = ["TornadoCluster", "join_cluster", "current"]

# Delivery kinds (python/src/cluster.rs).
_BROADCAST, _GROUP, _SEND, _PING, _PONG, _CLOSE = range(6)
# What a write to one connection may raise while others still take it.
_REFUSED = (ValueError, WebSocketClosedError, StreamClosedError)

_current: Optional["TornadoCluster"] = None


def current() -> Optional["TornadoCluster"]:
    """The process's cluster, if ``join_cluster`` was called."""
    return _current


def join_cluster(url: str, namespace: str, *, heartbeat: float = 1.0, expiry: float = 3.0,
                 queue: int = 65536) -> "TornadoCluster":
    """Join the cluster on ``url`` under ``namespace`` (call on the IOLoop
    that serves the handlers, before it takes connections). ``ValueError``
    for a bad URL, namespace or limit; Redis being down is not an error."""
    global _current
    if _current is not None:
        raise RuntimeError("this process already joined a cluster")
    _current = TornadoCluster(url, namespace, heartbeat=heartbeat, expiry=expiry, queue=queue)
    gen_log.info("cluster: node %d in namespace %r", _current.node.node_id, namespace)
    return _current


class TornadoCluster:
    """The process's node: its open handlers by cluster-unique id."""

    def __init__(self, url: str, namespace: str, **limits: Any) -> None:
        self.node = _native.ClusterNode(url, namespace, **limits)
        self.handlers: Dict[int, Any] = {}
        self.io_loop = IOLoop.current()
        self.io_loop.add_handler(self.node.fileno(), self._on_readable, IOLoop.READ)

    def opened(self, handler: Any) -> int:
        cid = self.node.open()
        self.handlers[cid] = handler
        return cid

    def closed(self, cid: int) -> None:
        if self.handlers.pop(cid, None) is not None:
            self.node.closed(cid)

    def members(self, group: str) -> Iterable[Any]:
        h = self.handlers
        return [h[i] for i in self.node.members(group) if i in h]

    @staticmethod
    def write_all(handlers: Iterable[Any], prepared: "_native.Prepared") -> int:
        """Write a prepared message to each handler's connection that can
        take it (a binary one is refused by a hixie connection, as the
        runtime does); returns how many took it."""
        n = 0
        for handler in handlers:
            conn = handler.ws_connection
            if conn is None or conn.is_closing():
                continue
            try:
                conn.write_prepared(prepared)
                n += 1
            except _REFUSED:
                pass
        return n

    def local(self, cid: int) -> Any:
        """This node's handler of ``cid`` (``WebSocketClosedError`` when gone)."""
        handler = self.handlers.get(cid)
        if handler is None or handler.ws_connection is None:
            raise WebSocketClosedError("no open connection %d" % cid)
        return handler

    def _on_readable(self, fd: int, events: int) -> None:
        for kind, target, payload in self.node.drain():
            if kind == _BROADCAST:
                self.write_all(list(self.handlers.values()), payload)
            elif kind == _GROUP:
                self.write_all(self.members(target), payload)
            else:
                handler = self.handlers.get(target)
                if handler is None:
                    continue
                try:
                    if kind == _SEND:
                        handler.write_message(payload, binary=isinstance(payload, bytes))
                    elif kind == _PING:
                        handler.ping(payload)
                    elif kind == _PONG:
                        handler.ws_connection._write_frame(True, 0xA, payload)
                    else:
                        handler.close(*payload)
                except (*_REFUSED, AttributeError) as e:
                    gen_log.debug("cluster command for %d not applied: %s", target, e)

    def stop(self) -> None:
        """Leave the cluster (local connections stay open)."""
        global _current
        self.io_loop.remove_handler(self.node.fileno())
        self.node.stop()
        if _current is self:
            _current = None
