"""WebSockets over HTTP/2 (RFC 8441) on the standalone server, talked to by
a real HTTP/2 client (the ``h2`` package, tests/harness/h2ws.py) over real
TLS with ALPN ``h2``. The client frames RFC 6455 itself (masked) in the
streams' DATA frames, so the tests also play clients that misbehave: a
stream reset mid-message, more streams than the server allows, a header
list over the limit, and the HTTP/2 abuses a public server meets (rapid
reset, PING and SETTINGS floods)."""

import os
import queue
import ssl
import struct
import subprocess
import sys
import time

import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as sync_connect

from conftest import ServerThread, free_port
from h2ws import MIB, OP_BINARY, OP_CLOSE, OP_TEXT, TIMEOUT, H2Client, frame
from polysocket import WebSocketHandler
from test_tls_reload import make_cert


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A self-signed certificate for ``localhost``: (certfile, keyfile)."""
    return make_cert(str(tmp_path_factory.mktemp("h2cert")), "server", 0x8441)


class Recorder(WebSocketHandler):
    """Echoes; reports opens and closes with the request's version."""

    def initialize(self, seen, any_origin=False):
        self.seen, self.any_origin = seen, any_origin

    def check_origin(self, origin):
        return self.any_origin or super().check_origin(origin)

    def open(self):
        self.seen.put(("open", self.request.path, self.request.version))

    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))

    def on_close(self):
        self.seen.put(("close", self.request.path, self.close_code))


def next_seen(seen, kind):
    while True:
        event = seen.get(timeout=TIMEOUT)
        if event[0] == kind:
            return event


def start(serve, cert, any_origin=False, **options):
    """A TLS server with the Recorder on every path; (server, seen)."""
    seen = queue.Queue()
    s = serve([(r"/.*", Recorder, {"seen": seen, "any_origin": any_origin})], ssl_certfile=cert[0], ssl_keyfile=cert[1],
              pages={"/page": "hello over h2"}, **options)
    return s, seen


def connect(s, cert, **kw):
    return H2Client(s.port, cert[0], **kw).start_h2()


def a_new_connection_is_served(s, cert, path, message):
    fresh = connect(s, cert)
    try:
        fresh.echo(fresh.websocket(path), message)
    finally:
        fresh.close()


def test_several_websockets_share_one_connection(serve, cert):
    s, seen = start(serve, cert)
    c = connect(s, cert)
    try:
        assert c.settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1
        paths = ["/ws/%d" % i for i in range(4)]
        sids = [c.websocket(p) for p in paths]
        opened = sorted(next_seen(seen, "open") for _ in paths)
        assert opened == [("open", p, "HTTP/2.0") for p in paths]
        # Every stream gets big and small messages at once: the client's
        # DATA frames interleave the streams, the echoes come back in order.
        sent = {}
        for sid in sids:
            sent[sid] = [os.urandom(MIB), "small %d" % sid, os.urandom(MIB // 2 + 3), "x" * 200]
            for message in sent[sid]:
                binary = isinstance(message, bytes)
                c.send(sid, OP_BINARY if binary else OP_TEXT,
                       message if binary else message.encode())
        for sid in sids:
            for message in sent[sid]:
                binary = isinstance(message, bytes)
                assert c.recv(sid) == (OP_BINARY if binary else OP_TEXT,
                                       message if binary else message.encode())
        # A close handshake on one stream ends it; the others go on.
        c.close_stream(sids[0])
        assert next_seen(seen, "close") == ("close", paths[0], 1000)
        c.echo(sids[1], "still here")
        # A plain GET on the same connection is answered as on HTTP/1.1.
        assert c.get("/page") == (200, b"hello over h2")
        assert c.get("/missing")[0] >= 400
    finally:
        c.close()


def test_an_http11_client_shares_the_tls_port(serve, cert):
    s, seen = start(serve, cert)
    for alpn in ([], ["http/1.1"]):
        ctx = ssl.create_default_context(cafile=cert[0])
        if alpn:
            ctx.set_alpn_protocols(alpn)
        with sync_connect("wss://localhost:%d/plain" % s.port, ssl=ctx, open_timeout=10) as ws:
            ws.send("over http/1.1")
            assert ws.recv(timeout=10) == "over http/1.1"
        assert next_seen(seen, "open") == ("open", "/plain", "HTTP/1.1")
    c = connect(s, cert)
    try:
        c.echo(c.websocket("/h2"), b"and h2 beside it")
        assert next_seen(seen, "open") == ("open", "/h2", "HTTP/2.0")
    finally:
        c.close()


def test_a_reset_stream_leaves_the_others_going(serve, cert):
    s, seen = start(serve, cert)
    c = connect(s, cert)
    try:
        victim, a, b = c.websocket("/victim"), c.websocket("/a"), c.websocket("/b")
        for _ in range(3):
            next_seen(seen, "open")
        # Half of a 1 MiB frame, then RST_STREAM mid-message.
        half = frame(OP_BINARY, os.urandom(MIB))[:MIB // 2]
        c.queued[victim] = bytearray(half)
        c.send(a, OP_BINARY, os.urandom(300 * 1024))
        c.wait(lambda: not c.queued.get(victim), "half a message sent")
        c.conn.reset_stream(victim, ErrorCodes.CANCEL)
        c.pump()
        assert next_seen(seen, "close") == ("close", "/victim", None)  # 1006: no close frame
        assert c.recv(a)[0] == OP_BINARY
        for i in range(5):
            c.echo(a, "a%d" % i)
            c.echo(b, os.urandom(70_000))
        assert c.goaway is None
    finally:
        c.close()


@pytest.mark.parametrize("checked_by", ["allowed_origins", "check_origin"])
def test_a_refused_origin_gets_403_on_its_stream(serve, cert, checked_by):
    # allowed_origins: the runtime refuses (the handler would let any in);
    # else the handler's check_origin does (Tornado's same-origin rule).
    if checked_by == "allowed_origins":
        options = {"allowed_origins": ["https://good.example"], "any_origin": True}
    else:
        options = {}
    s, seen = start(serve, cert, **options)
    c = connect(s, cert)
    try:
        evil = c.open_ws("/ws", origin="https://evil.example")
        assert c.status(evil) == 403
        c.wait(lambda: evil in c.ended or evil in c.resets, "the refusal's end")
        # The connection serves the next stream.
        good = "https://good.example" if options else "https://localhost:%d" % s.port
        c.echo(c.websocket("/ws", origin=good), "welcome")
        assert next_seen(seen, "open") == ("open", "/ws", "HTTP/2.0")
    finally:
        c.close()


@pytest.mark.parametrize("limit,status", [("max_connections_per_ip", 429),
                                          ("max_connections", 503)])
def test_each_stream_counts_against_the_connection_limits(serve, cert, limit, status):
    s, seen = start(serve, cert, **{limit: 2})
    c = connect(s, cert)
    try:
        first, second = c.websocket("/1"), c.websocket("/2")
        over = c.open_ws("/3")
        assert c.status(over) == status
        # An HTTP/1.1 client is over the limit too: refused when its TCP
        # connection is admitted, with the status after the TLS handshake.
        ctx = ssl.create_default_context(cafile=cert[0])
        with pytest.raises(InvalidStatus) as refused:
            sync_connect("wss://localhost:%d/4" % s.port, ssl=ctx, open_timeout=10)
        assert refused.value.response.status_code == status
        # One stream ends: its slot is free again.
        c.send(first, OP_CLOSE, struct.pack("!H", 1000))
        assert c.recv(first)[0] == OP_CLOSE
        assert next_seen(seen, "close")[1] == "/1"
        deadline = time.monotonic() + 5
        while True:
            sid = c.open_ws("/5")
            if c.status(sid) == 200 or time.monotonic() > deadline:
                break
        assert c.status(sid) == 200
        c.echo(sid, "in again")
        c.echo(second, "and the other")
    finally:
        c.close()


def test_streams_per_connection_are_bounded(serve, cert):
    s, seen = start(serve, cert, http2_max_streams=2)
    c = connect(s, cert)
    try:
        assert c.settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 2
        a, b = c.websocket("/a"), c.websocket("/b")
        # The h2 package obeys the server's limit; this client does not.
        c.conn.remote_settings.max_concurrent_streams = 100
        c.conn.remote_settings.acknowledge()
        third = c.open_ws("/c")
        c.wait(lambda: third in c.resets or third in c.responses or c.goaway is not None,
               "the third stream's answer")
        assert c.resets.get(third) == ErrorCodes.REFUSED_STREAM, (c.responses.get(third), c.goaway)
        c.echo(a, "a")
        c.echo(b, "b")
    finally:
        c.close()


@pytest.mark.parametrize("value", [0, -1, 1 << 32])
def test_http2_max_streams_is_checked(value):
    from polysocket import Server
    with pytest.raises(ValueError, match="http2_max_streams"):
        Server([(r"/", Recorder)], http2_max_streams=value)


def test_a_header_list_over_the_limit_is_refused_and_others_are_served(serve, cert):
    s, seen = start(serve, cert)
    c = connect(s, cert)
    try:
        # Just under the 16 KiB head limit: served.
        c.echo(c.websocket("/fits", extra=[("x-pad", "a" * (12 * 1024))]), "fits")
        big = c.open_ws("/big", extra=[("x-pad", "a" * (20 * 1024))])
        c.wait(lambda: big in c.resets or big in c.responses or c.goaway is not None or c.eof,
               "the oversized request's answer")
        # A stream error: 431, and the connection goes on.
        assert int(c.responses[big][":status"]) == 431, (c.resets.get(big), c.goaway)
        c.echo(c.websocket("/after"), "same connection")
        assert next_seen(seen, "open")[1] == "/fits"
    finally:
        c.close()
    a_new_connection_is_served(s, cert, "/fresh", "new connection")


def test_rapid_reset_ends_the_connection_with_enhance_your_calm(serve, cert):
    s, seen = start(serve, cert)
    c = connect(s, cert)
    try:
        # HEADERS then RST_STREAM, in batches written at once: streams the
        # client resets before the server takes them up (CVE-2023-44487).
        for _ in range(40):
            if c.goaway is not None or c.eof:
                break
            for _ in range(50):
                sid = c.open_ws("/rapid")
                c.conn.reset_stream(sid, ErrorCodes.CANCEL)
            c.pump(0)
        c.wait(lambda: c.goaway is not None or c.eof, "GOAWAY")
        assert c.goaway == ErrorCodes.ENHANCE_YOUR_CALM
    finally:
        c.close()
    a_new_connection_is_served(s, cert, "/after", "still serving")
    none_left_counted(s)


def none_left_counted(s):
    """Every stream that did open was closed: none is left counted."""
    deadline = time.monotonic() + 10
    while s.call(s.server.stats)["connections"] > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert s.call(s.server.stats)["connections"] == 0


def rapid_resets(c, n):
    """`n` streams opened and reset by the client (HEADERS, RST_STREAM),
    then one more opened, all in one write: the server reads the resets
    before it takes up any of the streams. The last stream's id."""
    for _ in range(n):
        c.conn.reset_stream(c.open_ws("/rapid"), ErrorCodes.CANCEL)
    return c.open_ws("/after")


@pytest.mark.parametrize("limit, resets, served", [(None, 5, True), (3, 3, True), (3, 5, False)])
def test_the_rapid_reset_bound_is_http2_max_pending_resets(serve, cert, limit, resets, served):
    # Under the bound (20 by default) the connection goes on; past the
    # configured one it is closed with GOAWAY ENHANCE_YOUR_CALM, and the
    # stream opened behind the resets is not taken up.
    options = {} if limit is None else {"http2_max_pending_resets": limit}
    s, seen = start(serve, cert, **options)
    c = connect(s, cert)
    try:
        after = rapid_resets(c, resets)
        if served:
            assert c.status(after) == 200, c.goaway
            c.echo(after, "still here")
            assert c.goaway is None
        else:
            assert c.status(after) is None
            assert c.goaway == ErrorCodes.ENHANCE_YOUR_CALM
    finally:
        c.close()
    a_new_connection_is_served(s, cert, "/fresh", "still serving")
    none_left_counted(s)


@pytest.mark.parametrize("value", [0, -1])
def test_http2_max_pending_resets_is_checked(value):
    from polysocket import Server
    with pytest.raises(ValueError, match="http2_max_pending_resets must be >= 1, got %d" % value):
        Server([(r"/", Recorder)], http2_max_pending_resets=value)


@pytest.mark.parametrize("flood", ["ping", "settings"])
def test_a_control_frame_flood_does_not_stop_the_server(serve, cert, flood):
    # The flooding connection opens no stream while it floods: a long
    # handshake timeout keeps the idle close out of this test.
    s, seen = start(serve, cert, handshake_timeout=60)
    other = connect(s, cert)
    busy = other.websocket("/other")
    c = connect(s, cert)
    try:
        n = 20_000
        # The ACK of the connection's first SETTINGS may still be on its
        # way: counted first, so that the flood's are counted exactly.
        c.wait(lambda: c.settings_acks >= 1, "the first SETTINGS ack")
        acks = c.settings_acks
        for i in range(n):
            if flood == "ping":
                c.conn.ping(struct.pack("!Q", i))
            else:
                c.conn.update_settings({SettingCodes.MAX_HEADER_LIST_SIZE: 65536 + i % 2})
        c.tls.write(c.conn.data_to_send())
        # The flooder writes for two seconds without reading what the
        # server answers; the other connection is served meanwhile.
        deadline = time.monotonic() + 2
        while c.outgoing.pending or c.unsent:
            c.pump(0.01, read=False)
            other.echo(busy, "served during the flood")
            if time.monotonic() > deadline:
                break
        other.echo(busy, os.urandom(200_000))
        # Reading again, the flooder gets its answers (or is sent away).
        if flood == "ping":
            c.wait(lambda: c.pongs == n or c.goaway is not None or c.eof, "the PING acks")
        else:
            c.wait(lambda: c.settings_acks == acks + n or c.goaway is not None or c.eof,
                   "the SETTINGS acks")
        if c.goaway is None and not c.eof:
            c.echo(c.websocket("/flooder"), "served after its flood")
        else:
            assert c.goaway in (None, ErrorCodes.ENHANCE_YOUR_CALM)
    finally:
        c.close()
        other.close()
    a_new_connection_is_served(s, cert, "/fresh", "new connection")


def test_an_idle_h2_connection_is_closed_after_the_handshake_timeout(serve, cert):
    s, seen = start(serve, cert, handshake_timeout=0.5)
    c = connect(s, cert)
    try:
        started = time.monotonic()
        c.wait(lambda: c.goaway is not None or c.eof, "the idle connection's end", timeout=10)
        assert time.monotonic() - started < 5
    finally:
        c.close()


def test_http2_false_offers_http11_only(serve, cert):
    s, seen = start(serve, cert, http2=False)
    c = H2Client(s.port, cert[0])
    try:
        assert c.alpn != "h2"
    finally:
        c.close()
    on = start(serve, cert)[0]
    c = H2Client(on.port, cert[0])
    try:
        assert c.alpn == "h2"
    finally:
        c.close()


def run_echo(port, cert, *flags):
    proc = subprocess.Popen([sys.executable, "-m", "polysocket", "echo", "--port", str(port),
                             "--tls-cert", cert[0], "--tls-key", cert[1], *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert b"echo server on wss://" in proc.stdout.readline()
    return proc


def handshake_when_listening(port, cert):
    deadline = time.monotonic() + 10
    while True:
        try:
            return H2Client(port, cert[0])
        except OSError:
            assert time.monotonic() < deadline, "the server does not listen"
            time.sleep(0.05)


@pytest.mark.parametrize("flags", [["--no-http2"], ["--http2-max-streams", "3"],
                                   ["--http2-max-pending-resets", "3"]])
def test_the_command_line_flags(cert, flags):
    port = free_port()
    proc = run_echo(port, cert, *flags)
    try:
        c = handshake_when_listening(port, cert)
        try:
            if flags[0] == "--no-http2":
                assert c.alpn != "h2"
            elif flags[0] == "--http2-max-pending-resets":
                c.start_h2()
                assert c.status(rapid_resets(c, 5)) is None
                assert c.goaway == ErrorCodes.ENHANCE_YOUR_CALM
            else:
                c.start_h2()
                assert c.settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 3
                c.echo(c.websocket("/"), "echo over h2")
        finally:
            c.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_silent_h2_client_does_not_hold_the_stop(cert):
    seen = queue.Queue()
    s = ServerThread([(r"/.*", Recorder, {"seen": seen})], "threaded", ssl_certfile=cert[0],
                     ssl_keyfile=cert[1], close_timeout=1.0, handshake_timeout=1.0).start()
    c = connect(s, cert)
    try:
        c.websocket("/silent")
        s.loop.call_soon_threadsafe(s.server.request_stop)
        s._thread.join(8)  # close_timeout and handshake_timeout are 1 s
        assert not s._thread.is_alive(), "the stop waits for a client that does not read"
    finally:
        c.close()  # lets the server's stop finish either way
        s.stop()
