"""Limits, bad input, handler errors, bad configuration, TLS, graceful stop."""

import contextlib
import logging
import os
import signal
import ssl
import subprocess
import sys
import time

import pytest
import websockets
from websockets.sync.client import connect as sync_connect

import polysocket
import rawws
from conftest import free_port
from polysocket import WebSocketHandler


class Echo(WebSocketHandler):
    def check_origin(self, origin):
        return True

    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


def refused_status(url, **kw):
    with pytest.raises(websockets.InvalidStatus) as e:
        sync_connect(url, open_timeout=5, **kw)
    return e.value.response.status_code


def over_limit_status(port):
    """The runtime answers a connection over a limit at once, without
    reading its request; a client that sends nothing reads it cleanly (one
    whose request arrives after the close may get a reset instead)."""
    with rawws.Conn(port) as c:
        return c.read_response().status


def test_max_connections_503(serve):
    s = serve([(r"/", Echo)], max_connections=2)
    with sync_connect(s.url()), sync_connect(s.url()):
        assert over_limit_status(s.port) == 503
    time.sleep(0.2)
    with sync_connect(s.url()) as ws:  # slots are given back
        ws.send("ok")
        assert ws.recv() == "ok"


def test_max_connections_per_ip_429(serve):
    s = serve([(r"/", Echo)], max_connections_per_ip=1)
    with sync_connect(s.url()):
        assert over_limit_status(s.port) == 429


def test_allowed_origins_403(serve):
    s = serve([(r"/", Echo)], allowed_origins=["http://good.example"])
    assert refused_status(s.url(), origin="http://bad.example") == 403
    with sync_connect(s.url(), origin="http://good.example") as ws:
        ws.send("ok")
        assert ws.recv() == "ok"


def test_messages_per_minute_1008(serve):
    s = serve([(r"/", Echo)], max_messages_per_minute=3)
    with sync_connect(s.url()) as ws:
        for i in range(3):
            ws.send(str(i))
            assert ws.recv() == str(i)
        ws.send("one too many")
        with pytest.raises(websockets.ConnectionClosedError):
            ws.recv()
        assert ws.close_code == 1008


def test_oversize_message_1009(serve):
    s = serve([(r"/", Echo)], max_message_size=1024)
    with sync_connect(s.url(), compression=None) as ws:
        ws.send("a" * 1024)
        assert ws.recv() == "a" * 1024
        ws.send("a" * 1025)
        with pytest.raises(websockets.ConnectionClosedError):
            ws.recv()
        assert ws.close_code == 1009


def slow_sender(port, sent):
    """A client past its handshake that sends `sent` bytes of a larger
    binary message (in 64 KiB fragments) and stops there."""
    c = rawws.open_conn(port)
    piece = b"z" * (64 * 1024)
    for i in range(sent // len(piece)):
        c.send_frame(rawws.OP_BINARY if i == 0 else rawws.OP_CONT, piece, fin=False)
    return c


def test_buffer_budget_closes_the_connection_asking_for_more_with_1013(serve):
    s = serve([(r"/.*", Echo)], max_buffered_total=1 << 20)
    with sync_connect(s.url()) as ws:
        held = slow_sender(s.port, 512 << 10)  # within the budget
        over = slow_sender(s.port, 1 << 20)  # would take it past
        assert over.read_close()[0] == 1013
        ws.send("still served")
        assert ws.recv(timeout=5) == "still served"
        held.close()
        over.close()


def test_invalid_utf8_1007(serve):
    s = serve([(r"/.*", Echo)])
    with rawws.open_conn(s.port) as c:
        c.send_frame(rawws.OP_TEXT, b"\xc3\x28")
        assert c.read_close()[0] == 1007


class Failing(WebSocketHandler):
    def on_message(self, message):
        if message == "boom":
            raise ValueError("boom in on_message")
        self.write_message(message)


class FailingAsync(WebSocketHandler):
    async def on_message(self, message):
        raise KeyError("boom in a coroutine")


class FailingOpen(WebSocketHandler):
    def open(self):
        raise RuntimeError("boom in open")

    def on_message(self, message):
        pass


def test_handler_exception_1011_logged_and_server_keeps_serving(serve, caplog):
    caplog.set_level(logging.ERROR, logger="polysocket")
    s = serve([(r"/sync", Failing), (r"/async", FailingAsync), (r"/open", FailingOpen)])
    for path, send in (("/sync", "boom"), ("/async", "x"), ("/open", None)):
        with sync_connect(s.url(path)) as ws:
            if send:
                ws.send(send)
            with pytest.raises(websockets.ConnectionClosedError):
                ws.recv()
            assert ws.close_code == 1011, path
    texts = [r.getMessage() + "\n" + (r.exc_text or "") for r in caplog.records]
    errors = [r for r in caplog.records if r.exc_info]
    assert len(errors) == 3, texts
    assert [type(r.exc_info[1]) for r in errors] == [ValueError, KeyError, RuntimeError]
    assert all("Traceback" in t for t in texts), texts
    with sync_connect(s.url("/sync")) as ws:  # still serving
        ws.send("fine")
        assert ws.recv() == "fine"


class BadInitialize(WebSocketHandler):
    def initialize(self):
        raise RuntimeError("boom in initialize")


def test_exception_during_handshake_is_500(serve, caplog):
    caplog.set_level(logging.ERROR, logger="polysocket")
    s = serve([(r"/", BadInitialize)])
    assert refused_status(s.url()) == 500
    assert any(isinstance(r.exc_info[1], RuntimeError) for r in caplog.records if r.exc_info)


@pytest.mark.parametrize("routes, options, error", [
    ([(r"/", Echo)], {"max_connections": -1}, ValueError),
    ([(r"/", Echo)], {"max_buffered_total": -1}, ValueError),
    ([(r"/", Echo)], {"max_connections": "10"}, TypeError),
    ([(r"/", Echo)], {"handshake_timeout": 0}, ValueError),
    ([(r"/", Echo)], {"ping_interval": -1.0}, ValueError),
    ([(r"/", Echo)], {"drain_timeout": -1.0}, ValueError),
    ([(r"/", Echo)], {"drain_timeout": float("nan")}, ValueError),
    ([(r"/", Echo)], {"drafts": ["hybi-99"]}, ValueError),
    ([(r"/", Echo)], {"drafts": []}, ValueError),
    ([(r"/", Echo)], {"allowed_origins": []}, ValueError),
    ([(r"/", Echo)], {"ssl_certfile": "/nonexistent.pem", "ssl_keyfile": "/nonexistent.pem"},
     ValueError),
    ([(r"/", Echo)], {"ssl_certfile": "/nonexistent.pem"}, ValueError),
    ([(r"/", Echo)], {"max_conections": 1}, TypeError),  # misspelt option
    ([(r"/", Echo)], {"port": 70000}, ValueError),
    ([(r"/", Echo)], {"port": "80"}, TypeError),
    ([(r"/", object)], {}, TypeError),
    ([(r"/(", Echo)], {}, ValueError),
    ("/", {}, TypeError),
    ([], {}, ValueError),
])
def test_bad_configuration(routes, options, error):
    with pytest.raises(error):
        polysocket.Server(routes, **options)


def test_allowed_drafts(serve):
    s = serve([(r"/.*", Echo)], drafts=["rfc6455"])
    with rawws.Conn(s.port) as c:
        c.send(rawws.upgrade_request(version=8))
        r = c.read_response()
        assert r.status == 426 and r.header("Sec-WebSocket-Version") == "13"
    with rawws.open_conn(s.port, version=13) as c:
        c.send_frame(rawws.OP_TEXT, b"ok")
        assert c.read_message() == (rawws.OP_TEXT, b"ok")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def test_tls(serve, certificate):
    cert, key = certificate
    s = serve([(r"/", Echo)], ssl_certfile=cert, ssl_keyfile=key)
    ctx = ssl.create_default_context(cafile=cert)
    with sync_connect("wss://127.0.0.1:%d/" % s.port, ssl=ctx) as ws:
        ws.send("secret")
        assert ws.recv() == "secret"


class Goodbye(WebSocketHandler):
    closed = []

    def on_message(self, message):
        self.write_message(message)

    def on_close(self):
        Goodbye.closed.append(self.close_code)


def test_graceful_stop_sends_1001_and_runs_on_close(serve):
    Goodbye.closed.clear()
    s = serve([(r"/", Goodbye)])
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(sync_connect(s.url())) for _ in range(3)]
        for c in clients:
            c.send("hi")
            assert c.recv() == "hi"
        s.stop()
        for c in clients:
            with pytest.raises(websockets.ConnectionClosedOK):
                c.recv()
            assert c.close_code == 1001
    assert Goodbye.closed == [1001] * 3


def connect_when_listening(port):
    """A client of a server process that is still starting up."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return sync_connect("ws://127.0.0.1:%d/" % port, open_timeout=1)
        except OSError:
            assert time.monotonic() < deadline, "the server does not listen"
            time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_python_m_polysocket_echo(sig):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "polysocket", "echo", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert b"echo server on ws://127.0.0.1:%d" % port in proc.stdout.readline()
        ws = connect_when_listening(port)
        with ws:
            ws.send("before")
            assert ws.recv() == "before"
            proc.send_signal(sig)
            with pytest.raises(websockets.ConnectionClosedOK):
                ws.recv(timeout=10)
            assert ws.close_code == 1001
        assert proc.wait(10) == 0, proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


EXITING = """
import sys
from polysocket import WebSocketHandler, serve

class Exiting(WebSocketHandler):
    def on_message(self, message):
        raise SystemExit(int(message))

print("ready", flush=True)
serve([(r"/", Exiting)], "127.0.0.1", int(sys.argv[1]))
"""


def test_system_exit_in_a_handler_ends_the_server():
    """SystemExit (like KeyboardInterrupt) is not a handler error: it leaves
    the loop, as from any asyncio callback."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", EXITING, str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        ws = connect_when_listening(port)
        with ws:
            ws.send("7")
        assert proc.wait(10) == 7, proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_native_server_checks_its_dispatcher():
    from polysocket import _native
    with pytest.raises(TypeError, match=r"no method accept\(\)"):
        _native.NativeServer(_native.ServerOptions(), "127.0.0.1", 0, object())
