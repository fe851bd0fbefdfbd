"""Bytes no well-behaved client sends, and the drafts no maintained client
speaks any more: raw sockets against the echo server."""

import os
import socket
import struct
import zlib

import pytest

from rawws import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, Conn,
                   Inflater, accept_for, close_payload, deflate_message, encode_frame,
                   open_conn, upgrade_request)

VERSIONS = ", ".join(["13", "8", "7", "6", "5", "4"])


# --- RFC 6455 / hybi-07 / hybi-08 handshakes -------------------------------

@pytest.mark.parametrize("version", [13, 8, 7])
def test_hybi_handshake_and_echo(port, version):
    key = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3
    with Conn(port) as c:
        c.send(upgrade_request(version, key))
        r = c.read_response()
        assert (r.status, r.reason) == (101, "Switching Protocols")
        assert r.header("Upgrade").lower() == "websocket"
        assert "upgrade" in r.header("Connection").lower()
        assert r.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" == accept_for(key)
        assert r.header("Sec-WebSocket-Extensions") is None  # none offered
        c.send_frame(OP_TEXT, "draft %d ✓".encode() % version)
        assert c.read_message() == (OP_TEXT, "draft %d ✓".encode() % version)
        c.send_frame(OP_CLOSE, close_payload(1000))
        assert c.read_close()[0] == 1000
        assert c.read_to_eof() == b""


REQUEST_VARIANTS = {
    # Firefox sends "keep-alive, Upgrade" and capitalises the token.
    "firefox-connection": lambda r: r.replace(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade")
                                     .replace(b"Upgrade: websocket", b"Upgrade: WebSocket"),
    "lowercase-names": lambda r: b"\r\n".join(
        [r.split(b"\r\n")[0]] + [l.split(b":")[0].lower() + b":" + l.split(b":", 1)[1]
                                   for l in r.split(b"\r\n")[1:] if l]) + b"\r\n\r\n",
    "query-string": lambda r: r.replace(b"GET /echo ", b"GET /echo?room=1&x=%20 "),
    "absolute-uri": lambda r: r.replace(b"GET /echo ", b"GET ws://127.0.0.1/echo "),
    "header-whitespace": lambda r: r.replace(b"Upgrade: websocket", b"Upgrade:   websocket  "),
    "unoffered-subprotocols": lambda r: r.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n"),
}


@pytest.mark.parametrize("variant", sorted(REQUEST_VARIANTS))
def test_request_variants_real_clients_send(port, variant):
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    with Conn(port) as c:
        c.send(REQUEST_VARIANTS[variant](upgrade_request(13, key)))
        r = c.read_response()
        assert r.status == 101, r
        assert r.header("Sec-WebSocket-Accept") == accept_for(key)
        # The echo server selects no subprotocol, so none may be answered.
        assert r.header("Sec-WebSocket-Protocol") is None
        c.send_frame(OP_TEXT, b"variant")
        assert c.read_message() == (OP_TEXT, b"variant")


def test_request_split_into_single_bytes(port):
    """The handshake parser is incremental: one byte per TCP segment."""
    key = "x3JJHMbDL1EzLkh9GBhXDw=="
    data = upgrade_request(13, key)
    with Conn(port) as c:
        for i in range(len(data)):
            c.send(data[i:i + 1])
        r = c.read_response()
        assert r.status == 101 and r.header("Sec-WebSocket-Accept") == accept_for(key)
        frame = b"".join([bytes([0x81, 0x80 | 5]), b"\0\0\0\0", b"hello"])
        for i in range(len(frame)):
            c.send(frame[i:i + 1])
        assert c.read_message() == (OP_TEXT, b"hello")


def test_frames_pipelined_behind_the_request(port):
    """Frames sent in the same segment as the request are not lost."""
    key = "AQIDBAUGBwgJCgsMDQ4PEA=="
    with Conn(port) as c:
        c.send(upgrade_request(13, key) + encode_frame(OP_TEXT, b"early")
               + encode_frame(OP_BINARY, b"\x00\x01"))
        assert c.read_response().status == 101
        assert c.read_message() == (OP_TEXT, b"early")
        assert c.read_message() == (OP_BINARY, b"\x00\x01")


# --- hybi-05/06 and hybi-02: the early binary framings, written here from the
# draft texts (opcode table A: 1 close, 2 ping, 3 pong, 4 text, 5 binary) ------

def table_a_header(first_bit, opcode, n):
    h = bytes([first_bit | opcode])
    if n < 126:
        return h + bytes([n])
    if n < 1 << 16:
        return h + bytes([126]) + struct.pack("!H", n)
    return h + bytes([127]) + struct.pack("!Q", n)


def hybi05_frame(opcode, payload, fin=True):
    """hybi-05/06 section 4.3: a 4-byte masking key in front, then the whole
    frame (header included) XORed with it."""
    key = os.urandom(4)
    body = table_a_header(0x80 if fin else 0, opcode, len(payload)) + payload
    return key + bytes(b ^ key[i % 4] for i, b in enumerate(body))


@pytest.mark.parametrize("version", [5, 6])
def test_hybi05_06_whole_frame_masking(port, version):
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    with Conn(port) as c:
        c.send(upgrade_request(version, key).replace(b"\r\nOrigin:", b"\r\nSec-WebSocket-Origin:"))
        r = c.read_response()
        assert r.status == 101 and r.header("Sec-WebSocket-Accept") == accept_for(key), r
        text = "hybi-0%d ✓" % version
        c.send(hybi05_frame(4, text.encode()))
        assert c.read_exact(2 + len(text.encode())) == table_a_header(0x80, 4, len(text.encode())) + text.encode()
        blob = os.urandom(300)  # a 16-bit length
        c.send(hybi05_frame(5, blob[:100], fin=False) + hybi05_frame(0, blob[100:]))
        assert c.read_exact(4 + 300) == table_a_header(0x80, 5, 300) + blob
        c.send(hybi05_frame(2, b"ping"))
        assert c.read_exact(6) == b"\x83\x04ping"
        c.send(hybi05_frame(1, struct.pack("!H", 1000) + b"bye"))
        answer = c.read_to_eof()
        if version == 5:  # an opaque close body, echoed
            assert answer == b"\x81\x05\x03\xe8bye"
        else:  # hybi-06: status code + reason; the code is answered
            assert answer[:4] == b"\x81\x02\x03\xe8" or answer[:2] == b"\x81\x05"
            assert answer[2:4] == b"\x03\xe8"


def test_hybi02_more_bit_framing(port):
    """hybi-02: the hixie-76 handshake plus Sec-WebSocket-Draft: 2, then
    unmasked frames whose first bit means MORE (fragments follow)."""
    with Conn(port) as c:
        c.send(HIXIE76_REQUEST.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Draft: 2\r\n\r\n")
               + HIXIE76_KEY3)
        r = c.read_response(body=16)
        assert r.status == 101 and r.body == HIXIE76_ANSWER, r
        c.send(table_a_header(0, 4, 5) + b"hello")
        assert c.read_exact(7) == b"\x04\x05hello"
        c.send(table_a_header(0x80, 4, 3) + b"abc" + table_a_header(0, 0, 3) + b"def")
        assert c.read_exact(8) == b"\x04\x06abcdef"
        c.send(table_a_header(0, 2, 1) + b"p")
        assert c.read_exact(3) == b"\x03\x01p"
        c.send(table_a_header(0, 1, 2) + b"zz")
        assert c.read_to_eof() == b"\x01\x02zz"


# --- protocol errors: the close code, then the server closes TCP -------------

def expect_close(c, code):
    got, _reason = c.read_close()
    assert got == code
    assert c.read_to_eof() == b"", "data after the close frame"


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
def test_reserved_opcode_is_1002(port, opcode):
    with open_conn(port) as c:
        c.send_frame(opcode, b"reserved")
        expect_close(c, 1002)


@pytest.mark.parametrize("rsv", [1, 2, 4])
def test_reserved_bits_without_extension_are_1002(port, rsv):
    with open_conn(port) as c:
        c.send_frame(OP_TEXT, b"rsv", rsv=rsv)
        expect_close(c, 1002)


def test_unmasked_client_frame_is_1002(port):
    with open_conn(port) as c:
        c.send_frame(OP_TEXT, b"not masked", mask=False)
        expect_close(c, 1002)


def test_continuation_without_start_is_1002(port):
    with open_conn(port) as c:
        c.send_frame(OP_CONT, b"orphan")
        expect_close(c, 1002)


def test_fragmented_control_frame_is_1002(port):
    with open_conn(port) as c:
        c.send_frame(OP_PING, b"half", fin=False)
        expect_close(c, 1002)


INVALID_UTF8 = [
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",  # surrogate
    b"\xff",
    b"\xc0\xaf",  # overlong '/'
    b"\xf4\x90\x80\x80",  # above U+10FFFF
]


@pytest.mark.parametrize("payload", INVALID_UTF8, ids=["surrogate", "ff", "overlong", "beyond"])
def test_invalid_utf8_text_is_1007(port, payload):
    with open_conn(port) as c:
        c.send_frame(OP_TEXT, payload)
        expect_close(c, 1007)


def test_invalid_utf8_across_fragments_is_1007(port):
    with open_conn(port) as c:
        c.send_frame(OP_TEXT, "κόσμε".encode(), fin=False)
        c.send_frame(OP_CONT, b"\xed\xa0", fin=False)
        c.send_frame(OP_CONT, b"\x80", fin=True)
        expect_close(c, 1007)


def test_invalid_utf8_close_reason_is_1007(port):
    with open_conn(port) as c:
        c.send_frame(OP_CLOSE, close_payload(1000, b"\xff\xfe"))
        expect_close(c, 1007)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 2999, 5000])
def test_invalid_close_code_is_1002(port, code):
    with open_conn(port) as c:
        c.send_frame(OP_CLOSE, close_payload(code))
        expect_close(c, 1002)


def test_valid_utf8_split_inside_a_character_is_echoed(port):
    text = "Ĥéłłö wörld ✓ 𝄞".encode()
    cut = text.index("𝄞".encode()) + 2  # in the middle of a 4-byte sequence
    with open_conn(port) as c:
        c.send_frame(OP_TEXT, text[:cut], fin=False)
        c.send_frame(OP_PING, b"in between")
        c.send_frame(OP_CONT, text[cut:], fin=True)
        fin, rsv, opcode, payload = c.read_frame()
        assert (opcode, payload) == (OP_PONG, b"in between")
        assert c.read_message() == (OP_TEXT, text)


def test_ping_inside_large_fragmented_message(port):
    with open_conn(port) as c:
        c.send_frame(OP_BINARY, b"a" * 100000, fin=False)
        c.send_frame(OP_PING, b"urgent")
        c.send_frame(OP_CONT, b"b" * 100000, fin=True)
        fin, rsv, opcode, payload = c.read_frame()
        assert (opcode, payload) == (OP_PONG, b"urgent")
        assert c.read_message() == (OP_BINARY, b"a" * 100000 + b"b" * 100000)


def test_data_after_close_is_ignored(port):
    with open_conn(port) as c:
        c.send_frame(OP_CLOSE, close_payload(1000))
        c.send_frame(OP_TEXT, b"after the close frame")
        code, _ = c.read_close()  # read_close fails on anything but a close
        assert code == 1000
        assert c.read_to_eof() == b""


def test_close_echoes_code(port):
    with open_conn(port) as c:
        c.send_frame(OP_CLOSE, close_payload(3000, b"custom"))
        expect_close(c, 3000)


# --- permessage-deflate on the wire -----------------------------------------

def test_permessage_deflate_compresses_on_the_wire(port):
    with open_conn(port, extra=["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"]) as c:
        ext = c.response.header("Sec-WebSocket-Extensions")
        assert ext is not None and ext.split(";")[0].strip() == "permessage-deflate", ext
        inflate = Inflater()
        text = ("polysocket deflates me " * 400).encode()
        c.send_frame(OP_TEXT, deflate_message(text), rsv=4)  # RSV1: compressed
        fin, rsv, opcode, payload = c.read_frame()
        assert fin and opcode == OP_TEXT
        assert rsv == 4, "the echo of a compressible message is not compressed"
        assert len(payload) < len(text) // 10
        assert inflate(payload) == text
        # An uncompressed message is legal too and echoes the same.
        c.send_frame(OP_BINARY, b"\x00\x01\x02")
        assert c.read_message(inflate) == (OP_BINARY, b"\x00\x01\x02")
        # RSV1 on a continuation frame is an error.
        c.send_frame(OP_TEXT, deflate_message(b"abc"), rsv=4, fin=False)
        c.send_frame(OP_CONT, b"", rsv=4)
        expect_close(c, 1002)


def test_permessage_deflate_corrupt_data_fails_the_connection(port):
    """RFC 7692 section 8.2.1 names no code: websockets sends 1002, ws 1007."""
    with open_conn(port, extra=["Sec-WebSocket-Extensions: permessage-deflate"]) as c:
        assert c.response.header("Sec-WebSocket-Extensions").startswith("permessage-deflate")
        # A stored block announcing 5 bytes with a wrong one's complement.
        c.send_frame(OP_BINARY, b"\x00\x05\x00\x00\x00hello", rsv=4)
        code, _ = c.read_close()
        assert code in (1002, 1007)
        assert c.read_to_eof() == b""


def test_permessage_deflate_context_takeover(port):
    """Messages compressed with one running context (no reset between them),
    as every browser sends them."""
    with open_conn(port, extra=["Sec-WebSocket-Extensions: permessage-deflate"]) as c:
        assert c.response.header("Sec-WebSocket-Extensions").startswith("permessage-deflate")
        co = zlib.compressobj(6, zlib.DEFLATED, -15)
        inflate = Inflater()
        for i in range(5):
            text = ("message %d of a conversation that repeats itself. " % i * 20).encode()
            data = co.compress(text) + co.flush(zlib.Z_SYNC_FLUSH)
            c.send_frame(OP_TEXT, data[:-4], rsv=4)
            assert c.read_message(inflate) == (OP_TEXT, text)


def test_x_webkit_deflate_frame(port):
    """The per-frame compression Chrome and Safari used before RFC 7692."""
    with open_conn(port, extra=["Sec-WebSocket-Extensions: x-webkit-deflate-frame"]) as c:
        ext = c.response.header("Sec-WebSocket-Extensions")
        assert ext is not None and ext.split(";")[0].strip() == "x-webkit-deflate-frame", ext
        co = zlib.compressobj(6, zlib.DEFLATED, -15)
        inflate = Inflater()
        for part in [b"first webkit frame " * 30, b"second webkit frame " * 30]:
            data = co.compress(part) + co.flush(zlib.Z_SYNC_FLUSH)
            c.send_frame(OP_BINARY, data[:-4], rsv=4)
            fin, rsv, opcode, payload = c.read_frame()
            assert (fin, opcode) == (True, OP_BINARY)
            assert (inflate(payload) if rsv == 4 else payload) == part


# --- limits --------------------------------------------------------------------

def test_frame_beyond_limit_is_1009(port):
    """A header announcing 1 TiB is refused before any payload arrives."""
    with open_conn(port) as c:
        c.send(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + os.urandom(4))
        expect_close(c, 1009)


def test_decompression_bomb_is_1009(port):
    """200 MiB of zeros deflate to 200 KiB: the inflated size is bounded."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    bomb = b"".join(co.compress(chunk) for _ in range(200)) + co.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 1 << 20
    with open_conn(port, extra=["Sec-WebSocket-Extensions: permessage-deflate"]) as c:
        c.send_frame(OP_BINARY, bomb[:-4], rsv=4)
        code, _ = c.read_close()
        assert code == 1009


# --- refused handshakes ------------------------------------------------------

def refused(port, request):
    with Conn(port) as c:
        c.send(request)
        r = c.read_response()
        assert c.read_to_eof() == b"", "the server must close after a refusal"
        return r


BASE = ("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\n")
KEY = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
MALFORMED = {
    "missing-key": BASE + "Sec-WebSocket-Version: 13\r\n\r\n",
    "short-key": BASE + "Sec-WebSocket-Key: AAAA\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "two-keys": BASE + KEY + KEY + "Sec-WebSocket-Version: 13\r\n\r\n",
    "non-numeric-version": BASE + KEY + "Sec-WebSocket-Version: thirteen\r\n\r\n",
    "not-http": "HELLO WORLD\r\n\r\n",
    "header-without-colon": BASE + "no colon here\r\n" + KEY + "Sec-WebSocket-Version: 13\r\n\r\n",
    "http-1.0": BASE.replace("HTTP/1.1", "HTTP/1.0") + KEY + "Sec-WebSocket-Version: 13\r\n\r\n",
    "missing-host": BASE.replace("Host: 127.0.0.1\r\n", "") + KEY + "Sec-WebSocket-Version: 13\r\n\r\n",
    "upgrade-h2c": BASE.replace("websocket", "h2c") + KEY + "Sec-WebSocket-Version: 13\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_handshake_is_400(port, name):
    r = refused(port, MALFORMED[name].encode())
    assert r.status == 400, r
    assert r.header("Sec-WebSocket-Accept") is None


def test_oversized_head_is_refused(port):
    request = BASE + KEY + "Sec-WebSocket-Version: 13\r\n" + "X-Pad: %s\r\n" % ("a" * 8000) * 64 + "\r\n"
    with Conn(port) as c:
        try:
            c.send(request.encode())
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.read_response()
        assert r.status in (400, 431), r


@pytest.mark.parametrize("version", ["99", "14", "0", "3"])
def test_unknown_version_is_426(port, version):
    r = refused(port, (BASE + KEY + "Sec-WebSocket-Version: %s\r\n\r\n" % version).encode())
    assert (r.status, r.reason) == (426, "Upgrade Required"), r
    assert r.header("Sec-WebSocket-Version") == VERSIONS


def test_post_is_refused(port):
    r = refused(port, (BASE.replace("GET", "POST") + KEY + "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    assert r.status in (400, 405), r


# --- hixie-76 (= hybi-00) and hixie-75 ----------------------------------------

HIXIE76_REQUEST = (
    b"GET /demo HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
    b"Origin: http://example.com\r\n"
    b"\r\n"
)
HIXIE76_KEY3 = b"^n:ds[4U"
HIXIE76_ANSWER = b"8jKS'y:G*Co,Wxa-"


@pytest.mark.parametrize("split", [False, True], ids=["one-segment", "key3-later"])
def test_hixie76_handshake_and_echo(port, split):
    with Conn(port) as c:
        if split:  # key3 arrives after the head, as a slow client sends it
            c.send(HIXIE76_REQUEST)
            c.send(HIXIE76_KEY3[:3])
            c.send(HIXIE76_KEY3[3:])
        else:
            c.send(HIXIE76_REQUEST + HIXIE76_KEY3)
        r = c.read_response(body=16)
        assert r.status == 101, r
        assert r.header("Upgrade") == "WebSocket"
        assert r.header("Connection") == "Upgrade"
        assert r.header("Sec-WebSocket-Origin") == "http://example.com"
        assert r.header("Sec-WebSocket-Location") == "ws://example.com/demo"
        assert r.header("Sec-WebSocket-Accept") is None
        assert r.body == HIXIE76_ANSWER
        text = "hixie-76 ✓".encode()
        c.send(b"\x00" + text + b"\xff")
        assert c.read_exact(len(text) + 2) == b"\x00" + text + b"\xff"
        c.send(b"\x00one\xff\x00two\xff")  # two frames in one segment
        assert c.read_exact(10) == b"\x00one\xff\x00two\xff"
        c.send(b"\xff\x00")  # the closing handshake
        assert c.read_to_eof() == b"\xff\x00"


def test_hixie76_frame_pipelined_behind_key3(port):
    with Conn(port) as c:
        c.send(HIXIE76_REQUEST + HIXIE76_KEY3 + b"\x00early\xff")
        assert c.read_response(body=16).body == HIXIE76_ANSWER
        assert c.read_exact(7) == b"\x00early\xff"


def test_hixie76_large_message(port):
    text = ("hixie ✓ " * 40000).encode()  # 400 kB between the sentinels
    with Conn(port) as c:
        c.send(HIXIE76_REQUEST + HIXIE76_KEY3)
        assert c.read_response(body=16).body == HIXIE76_ANSWER
        c.send(b"\x00" + text + b"\xff")
        assert c.read_exact(len(text) + 2) == b"\x00" + text + b"\xff"


def test_hixie76_invalid_utf8_closes(port):
    with Conn(port) as c:
        c.send(HIXIE76_REQUEST + HIXIE76_KEY3)
        assert c.read_response(body=16).body == HIXIE76_ANSWER
        c.send(b"\x00\xc0\xaf\xff")  # overlong encoding
        assert c.read_to_eof() == b"\xff\x00"  # the close frame, nothing echoed


def test_hixie76_wrong_key_is_refused(port):
    bad = HIXIE76_REQUEST.replace(b"4 @1  46546xW%0l 1 5", b"no digits here")
    with Conn(port) as c:
        c.send(bad + HIXIE76_KEY3)
        r = c.read_response()
        assert r.status == 400, r


def test_hixie75_handshake_and_echo(port):
    with Conn(port) as c:
        c.send(b"GET /demo HTTP/1.1\r\n"
               b"Upgrade: WebSocket\r\n"
               b"Connection: Upgrade\r\n"
               b"Host: example.com\r\n"
               b"Origin: http://example.com\r\n"
               b"\r\n")
        r = c.read_response(body=0)
        assert (r.status, r.reason) == (101, "Web Socket Protocol Handshake"), r
        assert r.header("Upgrade") == "WebSocket"
        assert r.header("WebSocket-Origin") == "http://example.com"
        assert r.header("WebSocket-Location") == "ws://example.com/demo"
        assert r.header("Sec-WebSocket-Origin") is None
        text = "hixie-75 ✓".encode()
        c.send(b"\x00" + text + b"\xff")
        assert c.read_exact(len(text) + 2) == b"\x00" + text + b"\xff"
        # hixie-75 has no close frame: closing our side ends the session.
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_to_eof() == b""
