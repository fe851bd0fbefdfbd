"""Fuzzes the argument conversion of the native extension (atheris).

Every public call of ``polysocket._native`` (the engine, both handshakes,
``Prepared``, ``ServerOptions``, a running ``NativeServer`` and the
standalone server's ``Connection``) is made with values the fuzzer picks
from every Python type: str (with lone surrogates), bytes, bytearray,
memoryviews (strided too), ints (negative, 2**64, 10**30), floats (NaN,
inf), None, lists, dicts, and objects whose ``__str__``, ``__index__``,
``__len__`` or ``__iter__`` raise. A call must either work or raise one of
the documented exceptions (``ALLOWED``); a Rust panic (pyo3's
``PanicException``, a ``BaseException``), any other exception or a crash
ends the run with the input that did it.

    python fuzz_args.py -seed=1 -runs=20000          # what the test runs
    python fuzz_args.py -max_total_time=600          # a longer run
    python fuzz_args.py crash-<hash>                 # replay a finding
"""

import sys

import atheris

with atheris.instrument_imports():
    from polysocket import _native
    from polysocket.handler import WebSocketClosedError


class Boom(Exception):
    """Raised by the hostile objects below; may propagate from a call."""


ALLOWED = (
    TypeError,
    ValueError,  # HandshakeError and UnicodeError too
    OverflowError,
    BufferError,
    _native.ClosedError,
    WebSocketClosedError,
    Boom,
    StopIteration,  # __next__ at the end of the events
)


class BadStr:
    def __str__(self):
        raise Boom("__str__")

    __repr__ = __str__


class BadIndex:
    def __index__(self):
        raise Boom("__index__")

    def __int__(self):
        raise Boom("__int__")

    def __float__(self):
        raise Boom("__float__")


class BadSeq:
    def __len__(self):
        raise Boom("__len__")

    def __iter__(self):
        raise Boom("__iter__")

    def __getitem__(self, i):
        raise Boom("__getitem__")


class BadBytes:
    def __bytes__(self):
        raise Boom("__bytes__")

    def __buffer__(self, flags):
        raise Boom("__buffer__")


class BadBool:
    def __bool__(self):
        raise Boom("__bool__")


class BigLen:
    def __len__(self):
        return sys.maxsize


INTS = [0, 1, -1, 7, 125, 126, 1000, 1005, 1006, 1015, 3000, 4999, 65535, 65536,
        2**31, 2**32, 2**63 - 1, 2**63, 2**64, -2**63 - 1, 10**30, -10**30]
FLOATS = [0.0, -0.0, 0.5, -1.0, 1e300, float("nan"), float("inf"), float("-inf")]
DRAFTS = ["rfc6455", "hybi-13", "hybi-10", "hybi-07", "hybi-04", "hybi-01",
          "hixie-76", "hixie-75", "hybi-00", "", "RFC6455", "x"]
KINDS = 22


def value(fdp, depth=0):
    """One value of any type, the fuzzer's choice."""
    kind = fdp.ConsumeIntInRange(0, KINDS - 1)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.PickValueInList(INTS)
    if kind == 3:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 9))
    if kind == 4:
        return fdp.PickValueInList(FLOATS)
    if kind == 5:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 200))  # may hold surrogates
    if kind == 6:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
    if kind == 7:
        return bytearray(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300)))
    if kind == 8:
        return memoryview(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300)))
    if kind == 9:  # not C-contiguous
        return memoryview(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300)))[::2]
    if kind == 10:  # invalid UTF-8 and NULs
        return b"\x00\xff\xfe\xc3(\xed\xa0\x80" * fdp.ConsumeIntInRange(0, 4)
    if kind == 11:
        return "\ud800\udfff\x00 é€😀"[fdp.ConsumeIntInRange(0, 7):]
    if kind == 12:  # large (not huge: the run must stay fast)
        return (b"x" if fdp.ConsumeBool() else "é") * fdp.PickValueInList([70000, 1 << 20])
    if kind == 13:
        return fdp.PickValueInList([BadStr, BadIndex, BadSeq, BadBytes, BadBool, BigLen])()
    if kind == 14:
        return fdp.PickValueInList(DRAFTS)
    if kind == 15 and depth < 2:
        return [value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    if kind == 16 and depth < 2:
        return tuple(value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3)))
    if kind == 17 and depth < 2:
        return {fdp.ConsumeUnicode(4): value(fdp, depth + 1)
                for _ in range(fdp.ConsumeIntInRange(0, 2))}
    if kind == 18:
        return [("Host", "a"), ("X", value(fdp, depth + 1))] if depth < 2 else []
    if kind == 19:
        return fdp.PickValueInList([object(), type, len, Ellipsis, 1j, frozenset()])
    if kind == 20:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
    return fdp.ConsumeInt(2)


def args(fdp, n):
    return [value(fdp) for _ in range(fdp.ConsumeIntInRange(0, n))]


def kwargs(fdp, names):
    return {name: value(fdp) for name in names if fdp.ConsumeBool()}


def call(fn, *a, **kw):
    """Calls fn; documented exceptions are fine, anything else propagates."""
    try:
        return fn(*a, **kw)
    except ALLOWED:
        return None
    except RuntimeError as e:
        # A handshake used out of order ("already accepted", "the request
        # was refused"): plain RuntimeError, by design; not a subclass.
        if type(e) is not RuntimeError:
            raise
        return None


REQUEST = [("Host", "example.com"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
           ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
           ("Sec-WebSocket-Protocol", "chat"),
           ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]


def engine(fdp):
    """A server's engine after a real handshake (RFC 6455, hybi-08 or -07,
    with or without permessage-deflate and a subprotocol)."""
    version = fdp.PickValueInList(["13", "8", "7"])
    headers = [(k, version if k == "Sec-WebSocket-Version" else v) for k, v in REQUEST]
    if fdp.ConsumeBool():
        headers.pop()
    hs = _native.ServerHandshake("GET", "/", headers)
    return hs.accept("chat" if fdp.ConsumeBool() else None)[1]


ENGINE_CALLS = ["receive", "send", "send_prepared", "ping", "pong", "close", "take_output",
                "release_buffers", "read_view", "commit", "__next__"]
ENGINE_PROPS = ["awaited", "has_output", "state", "draft", "subprotocol", "extension",
                "has_ping", "has_binary", "message_bytes_in", "message_bytes_out",
                "wire_bytes_in", "wire_bytes_out"]


def fuzz_engine(fdp):
    e = engine(fdp)
    views = []
    for _ in range(fdp.ConsumeIntInRange(1, 12)):
        name = fdp.PickValueInList(ENGINE_CALLS)
        if name == "send_prepared" and fdp.ConsumeBool():
            p = call(_native.Prepared, *args(fdp, 2))
            call(e.send_prepared, p if p is not None else value(fdp))
        elif name == "read_view" and fdp.ConsumeBool():
            v = call(e.read_view, fdp.PickValueInList([0, 1, 1 << 16, 1 << 20, 1 << 21, 2**40]))
            if v is not None:
                v[: min(len(v), 4)] = b"\x81\x02hi"[: min(len(v), 4)]
                if fdp.ConsumeBool():
                    views.append(v)  # held across later calls
                else:
                    v.release()
        elif name == "receive" and fdp.ConsumeBool():
            # A real frame from a client: masked text.
            call(e.receive, b"\x81\x82\x00\x00\x00\x00hi", value(fdp))
        else:
            call(getattr(e, name), *args(fdp, 3), **kwargs(fdp, ["binary", "n", "code", "reason"]))
        for event in iter(lambda: call(next, e, None), None):
            pass
        for prop in ENGINE_PROPS:
            getattr(e, prop)
    for v in views:
        v.release()


def fuzz_server_handshake(fdp):
    headers = REQUEST if fdp.ConsumeBool() else value(fdp)
    a = [value(fdp) if fdp.ConsumeBool() else "GET", value(fdp) if fdp.ConsumeBool() else "/",
         headers] + args(fdp, 1)
    kw = kwargs(fdp, ["max_message_size", "compression_level", "extensions", "drafts", "body"])
    hs = call(_native.ServerHandshake, *a, **kw)
    if hs is None:
        return
    call(hs.feed, *args(fdp, 2))
    for prop in ["draft", "subprotocols", "origin"]:
        call(getattr, hs, prop)
    call(hs.accept, *args(fdp, 3), **kwargs(fdp, ["subprotocol", "extra_headers", "secure"]))


def fuzz_client_handshake(fdp):
    a = [value(fdp) if fdp.ConsumeBool() else fdp.PickValueInList(DRAFTS),
         value(fdp) if fdp.ConsumeBool() else "h", value(fdp) if fdp.ConsumeBool() else "/"]
    kw = kwargs(fdp, ["secure", "origin", "subprotocols", "extra_headers", "max_message_size",
                      "compression_level", "extensions", "auto_pong"])
    hs = call(_native.ClientHandshake, *a, **kw)
    if hs is None:
        return
    call(hs.request_bytes)
    if fdp.ConsumeBool():
        call(hs.feed, *args(fdp, 2))
    else:
        call(hs.feed_head, *args(fdp, 3))
    for prop in ["key", "extension_offer", "response_status", "response_headers"]:
        getattr(hs, prop)


OPTIONS = ["max_connections", "max_connections_per_ip", "max_messages_per_minute",
           "max_message_size", "handshake_timeout", "ping_interval", "ping_timeout",
           "max_send_buffer", "max_buffered_total", "close_timeout", "allowed_origins",
           "drafts", "compression", "ssl_certfile", "ssl_keyfile", "workers", "reuse_port",
           "namespace", "cluster_heartbeat", "cluster_expiry", "cluster_queue", "http2",
           "http2_max_streams", "http2_max_pending_resets"]


def fuzz_options(fdp):
    call(_native.ServerOptions, *args(fdp, 1), **kwargs(fdp, OPTIONS))
    call(_native.Prepared, *args(fdp, 3), **kwargs(fdp, ["binary", "message"]))


class Dispatcher:
    """The entry points NativeServer requires (see polysocket.dispatch)."""

    ready = {}

    def accept(self, *a):
        return None

    def handshake_failed(self, *a):
        pass

    def event(self, *a):
        pass

    def returned(self, *a):
        pass

    def failed(self, *a):
        pass


SERVER = None
SERVER_CALLS = ["broadcast", "broadcast_group", "broadcast_all", "send_to", "ping_to",
                "close_to", "presence", "nodes", "cluster_stats", "join", "leave", "members",
                "connections", "connection_count", "drain", "fileno"]


def fuzz_server(fdp):
    global SERVER
    if SERVER is None:
        SERVER = _native.NativeServer(_native.ServerOptions(), "127.0.0.1", 0, Dispatcher())
    call(_native.NativeServer, *args(fdp, 6))
    name = fdp.PickValueInList(SERVER_CALLS)
    call(getattr(SERVER, name), *args(fdp, 3), **kwargs(fdp, ["binary", "code", "reason"]))
    conn = call(_native.Connection, *args(fdp, 2))
    if conn is not None:
        if fdp.ConsumeBool():
            call(conn._attach, SERVER if fdp.ConsumeBool() else value(fdp), value(fdp))
        for method in ["write_message", "ping", "close"]:
            call(getattr(conn, method), *args(fdp, 2))
        call(getattr, conn, "connection_id")
        call(conn._detach)


TARGETS = [fuzz_engine, fuzz_server_handshake, fuzz_client_handshake, fuzz_options, fuzz_server]


def test_one_input(data):
    fdp = atheris.FuzzedDataProvider(data)
    fdp.PickValueInList(TARGETS)(fdp)


def main():
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
