"""Every protocol version on one PHP daemon: a 2010-era hixie-76 client
(the draft's own example handshake), hixie-75, hybi-07/08 and a current
RFC 6455 client at the same time; the application sees each one's draft."""

import json
import socket

from conftest import raw_open
from rawws import OP_TEXT, Conn
from websockets.sync.client import connect

HIXIE76 = (
    b"GET /%s HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Sec-WebSocket-Key1: 4 @1  46546xW%%0l 1 5\r\n"
    b"Origin: http://example.com\r\n"
    b"\r\n"
    b"^n:ds[4U"
)
HIXIE76_ANSWER = b"8jKS'y:G*Co,Wxa-"


def hixie76(port, app):
    c = Conn(port)
    c.send(HIXIE76 % app.encode())
    r = c.read_response(body=16)
    assert r.status == 101 and r.body == HIXIE76_ANSWER, r
    return c


def hixie_roundtrip(c, text):
    data = text.encode()
    c.send(b"\x00" + data + b"\xff")
    return c.read_until(b"\xff")[1:-1].decode()


def test_hixie76_and_rfc6455_on_the_same_server(apps):
    with hixie76(apps.port, "echo") as old, connect(apps.url + "/echo") as new:
        assert hixie_roundtrip(old, "from 2010 ✓") == "from 2010 ✓"
        new.send("from today")
        assert new.recv() == "from today"
        assert hixie_roundtrip(old, "again") == "again"
        old.send(b"\xff\x00")
        assert old.read_to_eof() == b"\xff\x00"


def test_the_application_sees_the_draft(apps):
    with hixie76(apps.port, "info") as c:
        info = json.loads(hixie_roundtrip(c, "who"))
        assert info["draft"] == "hixie-76" and info["path"] == "/info"
        assert info["origin"] == "http://example.com"
    for version, draft in [(13, "rfc6455"), (8, "hybi-08"), (7, "hybi-07")]:
        with raw_open(apps.port, version, path="/info") as c:
            c.send_frame(OP_TEXT, b"who")
            opcode, data = c.read_message()
            assert json.loads(data)["draft"] == draft


def test_hixie75(apps):
    with Conn(apps.port) as c:
        c.send(b"GET /echo HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
               b"Host: example.com\r\nOrigin: http://example.com\r\n\r\n")
        assert c.read_response(body=0).status == 101
        assert hixie_roundtrip(c, "hixie-75 ✓") == "hixie-75 ✓"
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_to_eof() == b""


def test_hixie_clients_get_broadcasts(apps):
    """Server::broadcast encodes once per framing family: old and new
    clients both get the message."""
    with hixie76(apps.port, "control") as old, connect(apps.url + "/control") as new:
        new.send("all hello everyone")
        assert new.recv() == "hello everyone"
        assert new.recv() == "sent to 2"
        assert old.read_until(b"\xff") == b"\x00hello everyone\xff"
