"""php-websocket's security settings, enforced by the runtime: max clients
(503), connections per IP (429), requests per minute (close 1008), the
origin check (403; php-websocket's normalisation), unknown applications
(404), and bad input."""

import time
from contextlib import ExitStack

import pytest
from conftest import raw_open, raw_status
from rawws import OP_BINARY, OP_CONT, OP_TEXT, Conn
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

APPS = "php/tests/servers/apps.php"


def test_max_clients(php_server):
    server = php_server(APPS, "--max-clients", 3)
    with ExitStack() as stack:
        clients = [stack.enter_context(connect(server.url + "/echo")) for _ in range(3)]
        # The refusal is written at accept, before the request is read: read
        # it without sending (a request left unread makes the close an RST
        # that can discard the answer).
        with Conn(server.port) as c:
            assert c.read_to_eof().startswith(b"HTTP/1.1 503 "), "no 503"
        clients.pop().close()
        # a slot is free again once the closed connection's task ended
        deadline = time.time() + 5
        while True:
            try:
                with connect(server.url + "/echo") as ws:
                    ws.send("in")
                    assert ws.recv() == "in"
                break
            except InvalidStatus:
                assert time.time() < deadline, "the slot was not released"
                time.sleep(0.05)


def test_max_connections_per_ip(php_server):
    server = php_server(APPS, "--per-ip", 2)
    with connect(server.url + "/echo"), connect(server.url + "/echo"):
        with Conn(server.port) as c:
            assert c.read_to_eof().startswith(b"HTTP/1.1 429 "), "no 429"


def slow_sender(port, size, sent):
    """A client past its handshake that sends `sent` bytes of a `size`-byte
    binary message (in 64 KiB fragments) and stops there."""
    c = raw_open(port, path="/echo")
    piece = b"z" * (64 * 1024)
    for i in range(sent // len(piece)):
        c.send_frame(OP_BINARY if i == 0 else OP_CONT, piece, fin=False)
    return c


def test_buffer_budget_closes_the_connection_asking_for_more_with_1013(php_server):
    server = php_server(APPS, "--budget", 1 << 20)
    with connect(server.url + "/echo") as ws:
        held = slow_sender(server.port, 2 << 20, 512 << 10)  # within the budget
        over = slow_sender(server.port, 2 << 20, 1 << 20)  # would pass it
        assert over.read_close()[0] == 1013
        ws.send("still served")
        assert ws.recv(timeout=5) == "still served"
        held.close()
        over.close()


def test_max_requests_per_minute(php_server):
    server = php_server(APPS, "--per-minute", 5)
    with connect(server.url + "/echo") as ws:
        for i in range(5):
            ws.send(str(i))
            assert ws.recv() == str(i)
        ws.send("one too many")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1008


@pytest.mark.parametrize("origin,status", [
    ("http://example.com", 101),
    ("https://www.example.com", 101),
    ("http://example.com/", 101),
    ("http://evil.com", 403),
    ("http://example.com.evil.com", 403),
    (None, 403),
])
def test_origin_check(php_server, origin, status):
    # php-websocket's normalisation: "http://www.example.com/path" → "example.com"
    server = php_server(APPS, "--origin", "http://www.example.com/path")
    extra = ["Origin: " + origin] if origin else []
    # upgrade_request adds Origin: http://127.0.0.1 for version 13: use 14's
    # framing-less request text instead by replacing it.
    from rawws import upgrade_request
    with Conn(server.port) as c:
        request = upgrade_request(13, "dGhlIHNhbXBsZSBub25jZQ==", path="/echo")
        request = request.replace(b"Origin: http://127.0.0.1\r\n", "".join(h + "\r\n" for h in extra).encode())
        c.send(request)
        assert c.read_response().status == status


def test_unknown_application_is_404(apps):
    assert raw_status(apps.port, path="/nothing-here").status == 404
    assert raw_status(apps.port, path="/").status == 404


def test_application_key_is_the_subprotocol_only_when_offered(apps):
    with connect(apps.url + "/echo", subprotocols=["echo"]) as ws:
        assert ws.subprotocol == "echo"
    with connect(apps.url + "/echo") as ws:
        assert ws.subprotocol is None


@pytest.mark.parametrize("request_bytes", [
    b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /echo HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
])
def test_bad_handshakes_are_refused_and_the_server_lives(apps, request_bytes):
    with Conn(apps.port) as c:
        c.send(request_bytes)
        data = c.read_to_eof()
        assert data == b"" or data.startswith(b"HTTP/1.1 4"), data[:100]
    with connect(apps.url + "/echo") as ws:
        ws.send("still here")
        assert ws.recv() == "still here"


def test_protocol_errors_close_the_client_and_the_server_lives(apps):
    with raw_open(apps.port) as c:
        c.send_frame(OP_TEXT, b"\xc0\xaf")  # invalid UTF-8
        assert c.read_close()[0] == 1007
    with raw_open(apps.port) as c:
        c.send_frame(OP_TEXT, b"unmasked", mask=False)
        assert c.read_close()[0] == 1002
    with raw_open(apps.port) as c:
        c.send_frame(OP_BINARY, b"x" * 10, rsv=2)
        assert c.read_close()[0] == 1002
    with connect(apps.url + "/echo") as ws:
        ws.send("still here")
        assert ws.recv() == "still here"
