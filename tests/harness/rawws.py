"""A minimal WebSocket client on raw sockets, for sending what real clients
never send (standard library only). Frames are RFC 6455 (hybi-07+) framing."""

import base64
import hashlib
import os
import socket
import struct
import zlib

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TIMEOUT = 10.0

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_for(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) in order
        self.body = body

    def header(self, name):
        """The single value of a header (None if absent); fails on duplicates."""
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, "duplicate header %s: %r" % (name, values)
        return values[0] if values else None

    def __repr__(self):
        return "Response(%d %s, %r, %r)" % (self.status, self.reason, self.headers, self.body[:200])


class Conn:
    def __init__(self, port, timeout=TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise EOFError("connection closed by the server")
        self.buf += data

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_until(self, marker):
        while marker not in self.buf:
            self._fill()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_to_eof(self):
        """Everything until the server closes TCP (a timeout is a failure)."""
        while True:
            try:
                self._fill()
            except EOFError:
                out, self.buf = self.buf, b""
                return out
            except ConnectionResetError:
                out, self.buf = self.buf, b""
                return out

    def read_response(self, body=None):
        """Read an HTTP response head; the body is read by Content-Length, or
        `body` bytes (hixie-76's challenge answer), or nothing."""
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")[:-2]
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        assert version == "HTTP/1.1", lines[0]
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
        resp = Response(int(status), reason, headers, b"")
        length = resp.header("Content-Length")
        if body is None and length is not None:
            body = int(length)
        if body:
            resp.body = self.read_exact(body)
        return resp

    # --- RFC 6455 framing ---------------------------------------------------

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, mask=True):
        self.send(encode_frame(opcode, payload, fin, rsv, mask))

    def read_frame(self):
        """(fin, rsv, opcode, payload) of the next server frame; asserts that
        the server does not mask."""
        b0, b1 = self.read_exact(2)
        fin, rsv, opcode = bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8))[0]
        return fin, rsv, opcode, self.read_exact(n)

    def read_message(self, inflate=None):
        """(opcode, payload) of the next data message, fragments joined;
        control frames in between are returned by `read_frame` users only.
        `inflate`: a permessage-deflate decompressor for RSV1 messages."""
        fin, rsv, opcode, payload = self.read_frame()
        assert opcode in (OP_TEXT, OP_BINARY), "expected a data frame, got opcode %d %r" % (opcode, payload[:100])
        parts, compressed = [payload], bool(rsv & 4)
        assert rsv & 3 == 0, "RSV2/RSV3 set"
        while not fin:
            fin, rsv, op, payload = self.read_frame()
            assert op == OP_CONT and rsv == 0, (op, rsv)
            parts.append(payload)
        data = b"".join(parts)
        if compressed:
            assert inflate is not None, "RSV1 set although no extension was negotiated"
            data = inflate(data)
        return opcode, data

    def read_close(self):
        """The close frame the server sends, as (code, reason); then EOF."""
        while True:
            fin, rsv, opcode, payload = self.read_frame()
            if opcode == OP_CLOSE:
                break
            assert opcode in (OP_TEXT, OP_BINARY, OP_CONT, OP_PONG), opcode
        assert fin and rsv == 0
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        return code, payload[2:]


def encode_frame(opcode, payload=b"", fin=True, rsv=0, mask=True):
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 1 << 16:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        payload = mask_bytes(payload, key)
        head += key
    return head + payload


def mask_bytes(data, key):
    """`data` XOR the repeated 4-byte `key` (RFC 6455 section 5.3), as one
    big-integer XOR so that a 1 MiB payload costs milliseconds."""
    n = len(data)
    keys = int.from_bytes((key * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(data, "little") ^ keys).to_bytes(n, "little")


def parse_frame(buf):
    """(fin, rsv, opcode, payload) of the server frame at the start of the
    bytearray `buf` (removed from it), or None while it is incomplete;
    asserts that the server does not mask."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    assert not b1 & 0x80, "server frames must not be masked"
    n, at = b1 & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, at = struct.unpack("!H", bytes(buf[2:4]))[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, at = struct.unpack("!Q", bytes(buf[2:10]))[0], 10
    if len(buf) < at + n:
        return None
    payload = bytes(buf[at:at + n])
    del buf[:at + n]
    return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


def upgrade_request(version=13, key="dGhlIHNhbXBsZSBub25jZQ==", path="/echo", extra=()):
    lines = [
        "GET %s HTTP/1.1" % path,
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
    ]
    if key is not None:
        lines.append("Sec-WebSocket-Key: %s" % key)
    if version is not None:
        lines.append("Sec-WebSocket-Version: %s" % version)
    if version in (7, 8):
        lines.append("Sec-WebSocket-Origin: http://127.0.0.1")
    else:
        lines.append("Origin: http://127.0.0.1")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def open_conn(port, version=13, extra=()):
    """A connection past a successful RFC 6455-style handshake."""
    key = base64.b64encode(os.urandom(16)).decode()
    c = Conn(port)
    c.send(upgrade_request(version, key, extra=extra))
    resp = c.read_response()
    assert resp.status == 101, resp
    assert resp.header("Sec-WebSocket-Accept") == accept_for(key), resp
    c.response = resp
    return c


def deflate_message(data):
    """permessage-deflate compression of one message (no context takeover)."""
    co = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    out = co.compress(data) + co.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


class Inflater:
    """The receiving side of permessage-deflate (the context is kept: the
    server may use context takeover)."""

    def __init__(self, wbits=15):
        self.d = zlib.decompressobj(-wbits)

    def __call__(self, data):
        return self.d.decompress(data + b"\x00\x00\xff\xff")
