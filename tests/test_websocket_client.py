"""The synchronous `websocket-client` library against the echo server."""

import os
import struct

import pytest
import websocket
from websocket import ABNF


@pytest.fixture
def ws(ws_url):
    conn = websocket.create_connection(ws_url, timeout=10)
    yield conn
    try:
        conn.close(timeout=2)
    except (websocket.WebSocketException, OSError):
        conn.shutdown()  # a test that already closed the connection


def test_handshake(ws):
    assert ws.getstatus() == 101
    headers = ws.getheaders()
    assert headers["upgrade"].lower() == "websocket"
    assert "sec-websocket-extensions" not in headers  # websocket-client offers none


def test_text(ws):
    for text in ["hello", "κόσμε ✓ 𝄞", "a" * 70000]:
        ws.send(text)
        opcode, data = ws.recv_data()
        assert opcode == ABNF.OPCODE_TEXT
        assert data.decode("utf-8") == text


def test_binary(ws):
    for blob in [bytes(range(256)), os.urandom(100000), b""]:
        ws.send_binary(blob)
        opcode, data = ws.recv_data()
        assert opcode == ABNF.OPCODE_BINARY
        assert data == blob


@pytest.mark.parametrize("opcode,parts", [
    (ABNF.OPCODE_TEXT, ["Hel", "lo, ", "frag", "ments ✓"]),
    (ABNF.OPCODE_BINARY, [b"\x00\x01", b"", b"\x02" * 1000, b"\xff"]),
], ids=["text", "binary"])
def test_fragmented_send_echoed_whole(ws, opcode, parts):
    for i, part in enumerate(parts):
        frame_opcode = opcode if i == 0 else ABNF.OPCODE_CONT
        fin = 1 if i == len(parts) - 1 else 0
        data = part.encode() if isinstance(part, str) else part  # cont frames take bytes
        ws.send_frame(ABNF.create_frame(data, frame_opcode, fin))
    got_opcode, data = ws.recv_data()
    assert got_opcode == opcode
    whole = "".join(parts).encode() if opcode == ABNF.OPCODE_TEXT else b"".join(parts)
    assert data == whole


def test_ping_inside_fragmented_message(ws):
    ws.send_frame(ABNF.create_frame("first half, ", ABNF.OPCODE_TEXT, 0))
    ws.ping("between fragments")
    ws.send_frame(ABNF.create_frame("second half", ABNF.OPCODE_CONT, 1))
    opcode, data = ws.recv_data(control_frame=True)
    assert (opcode, data) == (ABNF.OPCODE_PONG, b"between fragments")
    opcode, data = ws.recv_data(control_frame=True)
    assert (opcode, data) == (ABNF.OPCODE_TEXT, b"first half, second half")


def test_ping(ws):
    for payload in ["", "ping ✓", "p" * 125]:
        ws.ping(payload)
        opcode, data = ws.recv_data(control_frame=True)
        assert opcode == ABNF.OPCODE_PONG
        assert data == payload.encode()


def test_close(ws):
    ws.send("bye")
    assert ws.recv() == "bye"
    ws.send_close(1000, b"done here")
    frame = ws.recv_frame()
    assert frame.opcode == ABNF.OPCODE_CLOSE
    assert struct.unpack("!H", frame.data[:2])[0] == 1000
    # The server closes TCP after the close handshake.
    ws.sock.settimeout(5)
    assert ws.sock.recv(1) == b""


def test_close_code_is_echoed(ws):
    ws.send_close(4001, b"application code")
    frame = ws.recv_frame()
    assert frame.opcode == ABNF.OPCODE_CLOSE
    assert struct.unpack("!H", frame.data[:2])[0] == 4001
