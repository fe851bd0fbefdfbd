"""WebSockets over HTTP/2 (RFC 8441) on the PHP daemon: a real HTTP/2
client (the `h2` package, over TLS with ALPN h2; tests/harness/h2ws.py)
opens several WebSockets as extended CONNECT streams of one connection,
with RFC 6455 frames (masked) in its DATA frames; the application sees
getHttpVersion() "2.0". The limits count streams (per-IP: 429, origin: 403,
setHttp2MaxStreams(): REFUSED_STREAM), setHttp2MaxPendingResets() bounds
the streams a client resets before the server took them up ("rapid reset":
GOAWAY ENHANCE_YOUR_CALM), and setHttp2(false) leaves ALPN at HTTP/1.1 while
wss keeps working."""

import json
import os
import ssl
import subprocess

from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from test_wss_browser import certificate  # noqa: F401 (fixture)
from websockets.sync.client import connect

from conftest import php_argv, php_json
from h2ws import OP_BINARY, OP_TEXT, H2Client

APPS = "php/tests/servers/apps.php"
TIMEOUT = 10


def h2_client(server, cert, http2=True):
    """A client of the daemon's TLS port (the certificate is for 127.0.0.1),
    past the server's SETTINGS when ``http2``."""
    c = H2Client(server.port, cert, host="127.0.0.1")
    return c.start_h2() if http2 else c


def test_two_websockets_on_one_http2_connection(php_server, certificate):  # noqa: F811
    cert, key = certificate
    server = php_server(APPS, "--cert", cert, "--key", key)
    c = h2_client(server, cert)
    try:
        # RFC 8441's setting, and setHttp2MaxStreams()'s default.
        assert c.settings[SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1
        assert c.settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 100
        echo, info = c.websocket("/echo"), c.websocket("/info")
        # Both streams busy at once: a 1 MiB message on one, text on the other.
        data = os.urandom(1 << 20)
        c.send(echo, OP_BINARY, data)
        c.send(info, OP_TEXT, b"?")
        c.send(echo, OP_TEXT, "über h2 ✓".encode())
        seen = json.loads(c.recv(info)[1])
        assert (seen["httpVersion"], seen["http2"], seen["secure"]) == ("2.0", True, True), seen
        assert seen["path"] == "/info" and seen["draft"] == "rfc6455", seen
        assert c.recv(echo) == (OP_BINARY, data)
        assert c.recv(echo) == (OP_TEXT, "über h2 ✓".encode())
        c.close_stream(echo)
        # The connection outlives its WebSockets: a third one on it.
        again = c.websocket("/echo")
        c.echo(again, "again")
        c.close_stream(again)
        c.close_stream(info)
        # registerPage() answers a plain GET on the same connection.
        headers, body = c.fetch("/page.txt")
        assert headers[":status"] == "200", headers
        assert headers["content-type"] == "text/plain", headers
        assert body == b"a page\n"
        assert c.goaway is None
    finally:
        c.close()
    # The same server still speaks HTTP/1.1 to a client that does not offer h2.
    context = ssl.create_default_context(cafile=cert)
    with connect("wss://127.0.0.1:%d/info" % server.port, ssl=context) as ws:
        ws.send("?")
        seen = json.loads(ws.recv(timeout=TIMEOUT))
        assert (seen["httpVersion"], seen["http2"], seen["secure"]) == ("1.1", False, True), seen


def test_limits_count_streams(php_server, certificate):  # noqa: F811
    """setMaxConnectionsPerIp() and the origin check answer on the stream;
    the connection and its other streams carry on."""
    cert, key = certificate
    server = php_server(APPS, "--cert", cert, "--key", key, "--per-ip", 1,
                        "--origin", "good.example")
    c = h2_client(server, cert)
    try:
        assert c.status(c.open_ws("/echo", origin="https://evil.example")) == 403
        first = c.websocket("/echo", origin="https://good.example")
        assert c.status(c.open_ws("/echo", origin="https://good.example")) == 429
        c.echo(first, "still here")
        c.close_stream(first)
        # Its place is free again once it closed.
        assert c.status(c.open_ws("/echo", origin="https://good.example")) == 200
        assert c.goaway is None
    finally:
        c.close()


def test_http2_max_streams_refuses_the_next_stream(php_server, certificate):  # noqa: F811
    """setHttp2MaxStreams(1): SETTINGS_MAX_CONCURRENT_STREAMS 1, and a
    second stream opened at once (sent with the connection preface, before
    the server's SETTINGS could say so) is refused with RST_STREAM
    REFUSED_STREAM while the first works."""
    cert, key = certificate
    server = php_server(APPS, "--cert", cert, "--key", key, "--http2-max-streams", 1)
    c = h2_client(server, cert, http2=False).start_h2(wait=False)
    try:
        first, second = c.open_ws("/echo"), c.open_ws("/echo")
        assert c.status(first) == 200
        assert c.status(second) is None
        assert c.resets[second] == ErrorCodes.REFUSED_STREAM, c.resets
        c.wait(lambda: c.settings, "the server's SETTINGS")
        assert c.settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 1, c.settings
        assert c.settings[SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1, c.settings
        c.echo(first, "one")
        assert first not in c.resets and c.goaway is None
    finally:
        c.close()


def rapid_resets(c, n):
    """`n` extended CONNECTs, each reset (CANCEL) at once, written together
    (one TLS record): the server reads them all before it takes up any, so
    they are `n` streams reset before the server took them up."""
    for _ in range(n):
        sid = c.open_ws("/echo")
        c.conn.reset_stream(sid, ErrorCodes.CANCEL)
    c.pump(0)


def still_serves(c):
    """A WebSocket on the connection echoes: the server took up every
    earlier stream (it takes them up in order), so none of the resets above
    is counted any more, and no GOAWAY came."""
    ws = c.websocket("/echo")
    c.echo(ws, "still here")
    c.close_stream(ws)
    assert c.goaway is None and not c.eof


def test_http2_max_pending_resets_ends_a_rapid_reset(php_server, certificate):  # noqa: F811
    """setHttp2MaxPendingResets(3): three streams reset before the server
    took them up are tolerated, the fourth ends the connection with GOAWAY
    ENHANCE_YOUR_CALM (CVE-2023-44487); the server serves new connections."""
    cert, key = certificate
    server = php_server(APPS, "--cert", cert, "--key", key, "--http2-max-pending-resets", 3)
    c = h2_client(server, cert)
    try:
        rapid_resets(c, 3)
        still_serves(c)
        rapid_resets(c, 4)
        c.wait(lambda: c.goaway is not None or c.eof, "GOAWAY")
        assert c.goaway == ErrorCodes.ENHANCE_YOUR_CALM, c.goaway
    finally:
        c.close()
    c = h2_client(server, cert)
    try:
        still_serves(c)
    finally:
        c.close()


def test_http2_default_pending_resets_tolerate_five(php_server, certificate):  # noqa: F811
    """By default (20) the five rapid resets that setHttp2MaxPendingResets(3)
    refuses leave the connection working."""
    cert, key = certificate
    server = php_server(APPS, "--cert", cert, "--key", key)
    c = h2_client(server, cert)
    try:
        rapid_resets(c, 5)
        still_serves(c)
        rapid_resets(c, 5)
        still_serves(c)
    finally:
        c.close()


def test_http2_off(php_server, certificate):  # noqa: F811
    """setHttp2(false): ALPN does not select h2, and wss over HTTP/1.1 works."""
    cert, key = certificate
    server = php_server(APPS, "--cert", cert, "--key", key, "--no-http2")
    c = h2_client(server, cert, http2=False)
    try:
        assert c.alpn in (None, "http/1.1")
    finally:
        c.close()
    context = ssl.create_default_context(cafile=cert)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with connect("wss://127.0.0.1:%d/info" % server.port, ssl=context, max_size=None) as ws:
        ws.send("?")
        seen = json.loads(ws.recv(timeout=TIMEOUT))
        assert (seen["httpVersion"], seen["http2"], seen["secure"]) == ("1.1", False, True), seen
    with connect("wss://127.0.0.1:%d/echo" % server.port, ssl=context, max_size=None) as ws:
        data = os.urandom(1 << 20)
        ws.send(data)
        assert ws.recv(timeout=TIMEOUT) == data


def test_plain_ws_is_http_1_1(apps):
    with connect(apps.url + "/info") as ws:
        ws.send("?")
        seen = json.loads(ws.recv(timeout=TIMEOUT))
        assert (seen["httpVersion"], seen["http2"], seen["secure"]) == ("1.1", False, False), seen


def test_http2_setters(tmp_path):
    """On by default with 100 streams; false for what is not a bool / an
    int in 1..4294967295, nothing changed."""
    assert php_json(tmp_path, """
        echo json_encode([$s->getHttp2(), $s->setHttp2(1), $s->setHttp2('0'), $s->setHttp2(null),
            $s->getHttp2(), $s->setHttp2(false), $s->getHttp2(), $s->setHttp2(true), $s->getHttp2(),
            $s->getHttp2MaxStreams(), $s->setHttp2MaxStreams(0), $s->setHttp2MaxStreams(-1),
            $s->setHttp2MaxStreams('5'), $s->setHttp2MaxStreams(1.5), $s->setHttp2MaxStreams(null),
            $s->setHttp2MaxStreams(4294967296), $s->setHttp2MaxStreams(PHP_INT_MAX),
            $s->getHttp2MaxStreams(), $s->setHttp2MaxStreams(4294967295),
            $s->getHttp2MaxStreams(), $s->setHttp2MaxStreams(1), $s->getHttp2MaxStreams()]), "\\n";
    """) == [True, False, False, False, True, True, False, True, True,
             100, False, False, False, False, False, False, False, 100, True, 4294967295, True, 1]


def test_http2_max_pending_resets_setter(tmp_path):
    """20 by default; false for what is not an int >= 1 (0 would close a
    connection at its first reset stream), nothing changed."""
    assert php_json(tmp_path, """
        echo json_encode([$s->getHttp2MaxPendingResets(), $s->setHttp2MaxPendingResets(0),
            $s->setHttp2MaxPendingResets(-1), $s->setHttp2MaxPendingResets(PHP_INT_MIN),
            $s->setHttp2MaxPendingResets('5'), $s->setHttp2MaxPendingResets(1.5),
            $s->setHttp2MaxPendingResets(null), $s->setHttp2MaxPendingResets(true),
            $s->setHttp2MaxPendingResets([3]), $s->getHttp2MaxPendingResets(),
            $s->setHttp2MaxPendingResets(3), $s->getHttp2MaxPendingResets(),
            $s->setHttp2MaxPendingResets(PHP_INT_MAX), $s->getHttp2MaxPendingResets() === PHP_INT_MAX,
            $s->setHttp2MaxPendingResets(1), $s->getHttp2MaxPendingResets()]), "\\n";
    """) == [20, False, False, False, False, False, False, False, False, 20,
             True, 3, True, True, True, 1]


def test_phpinfo_shows_the_http2_default(tmp_path):
    script = tmp_path / "info.php"
    script.write_text("<?php phpinfo(INFO_MODULES);\n")
    r = subprocess.run(php_argv(str(script)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ("HTTP/2 (RFC 8441) => on by default with wss (setHttp2()), 100 streams per "
            "connection (setHttp2MaxStreams()), 20 streams reset before they were taken up "
            "(setHttp2MaxPendingResets())") in r.stdout, r.stdout
