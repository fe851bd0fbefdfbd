"""An HTTP/2 client for WebSockets over HTTP/2 (RFC 8441), for the tests of
every face (python/tests/standalone/test_http2.py, php/tests/test_http2.py):
the PyPI ``h2`` state machine over real TLS with ALPN ``h2``, and RFC 6455
frames built (masked) and parsed here in the streams' DATA frames
(rawws.py's framing), so that a test can also play a client that
misbehaves: a stream reset mid-message, more streams than the server
allows, a header list over the limit, PING and SETTINGS floods.

TLS runs over memory BIOs on a non-blocking socket, so a test decides when
the client reads: a flooding client can stop reading while it writes, as an
attacker would, without a thread sharing the TLS object."""

import select
import socket
import ssl
import struct
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from h2.settings import SettingCodes

from rawws import OP_BINARY, OP_CLOSE, OP_CONT, OP_TEXT, encode_frame, parse_frame

__all__ = ["H2Client", "MIB", "OP_BINARY", "OP_CLOSE", "OP_CONT", "OP_TEXT", "TIMEOUT", "frame"]

MIB = 1 << 20
TIMEOUT = 20.0


def frame(opcode, payload=b"", fin=True):
    """One client frame, masked (RFC 6455 section 5.3)."""
    return encode_frame(opcode, payload, fin)


class H2Client:
    """An HTTP/2 client connection: TLS in memory BIOs over a non-blocking
    socket, the ``h2`` state machine, and per-stream WebSocket framing."""

    def __init__(self, port, cafile, alpn=("h2", "http/1.1"), host="localhost"):
        """Connects to 127.0.0.1:`port` and does the TLS handshake, checking
        the certificate against `cafile` for `host` (also the requests'
        ``:authority``); ``alpn`` is what ALPN chose. HTTP/2 starts with
        start_h2()."""
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.set_alpn_protocols(list(alpn))
        self.port = port
        self.authority = "%s:%d" % (host, port)
        self.raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.raw.setblocking(False)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=host)
        self.unsent = bytearray()  # TLS records the socket did not take yet
        self.eof = False
        deadline = time.monotonic() + 10
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                assert time.monotonic() < deadline and not self.eof, "TLS handshake timed out"
                self._transfer(0.05)
        self._transfer(0)
        self.alpn = self.tls.selected_alpn_protocol()
        self.conn = None
        self.settings = {}  # the server's SETTINGS
        self.responses, self.resets, self.ended = {}, {}, set()
        self.data, self.queued, self.frames = {}, {}, {}
        self.goaway = None
        self.pongs = self.settings_acks = 0

    # --- HTTP/2 ---------------------------------------------------------------
    def start_h2(self, wait=True):
        """The connection preface, our SETTINGS (1 MiB windows, so echoes
        need few WINDOW_UPDATEs), then (``wait``) the server's SETTINGS;
        without ``wait`` the preface goes out with the next pump(), with
        whatever the test queued meanwhile."""
        assert self.alpn == "h2", "ALPN chose %r" % self.alpn
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: MIB})
        self.conn.increment_flow_control_window(16 * MIB)
        if wait:
            self.wait(lambda: self.settings, "the server's SETTINGS")
        return self

    def close(self):
        self.raw.close()

    def _transfer(self, timeout, read=True):
        """One round of socket I/O: write what TLS produced, read what came."""
        self.unsent += self.outgoing.read()
        r = [self.raw] if read and not self.eof else []
        w = [self.raw] if self.unsent and not self.eof else []
        if not r and not w:
            return
        readable, writable, _ = select.select(r, w, [], timeout)
        if writable:
            try:
                del self.unsent[:self.raw.send(self.unsent)]
            except BlockingIOError:
                pass
            except OSError:  # the server closed: nothing more goes out
                self.unsent.clear()
                self.eof = True
        if readable:
            try:
                data = self.raw.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                self.incoming.write(data)
            else:
                self.eof = True
                self.incoming.write_eof()

    def _plain(self):
        out = bytearray()
        while True:
            try:
                chunk = self.tls.read(1 << 20)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self.eof = True
                break
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def _send_streams(self):
        """Queued stream data, one frame per stream per round (so streams
        interleave), as far as flow control and a 1 MiB TLS backlog let."""
        while len(self.unsent) < MIB and self.goaway is None:
            sent = False
            for sid, buf in list(self.queued.items()):
                if not buf or sid in self.resets:
                    self.queued.pop(sid)
                    continue
                try:
                    window = self.conn.local_flow_control_window(sid)
                except h2.exceptions.StreamClosedError:
                    self.queued.pop(sid)
                    continue
                n = min(window, self.conn.max_outbound_frame_size, len(buf))
                if n:
                    self.conn.send_data(sid, bytes(buf[:n]))
                    del buf[:n]
                    sent = True
            out = self.conn.data_to_send()
            if out:
                self.tls.write(out)
                self.unsent += self.outgoing.read()
            if not sent:
                break

    def pump(self, timeout=0.05, read=True):
        if self.conn is not None:
            self._send_streams()
        self._transfer(timeout, read)
        if not read:
            return
        plain = self._plain()
        if plain and self.conn is not None and self.goaway is None:
            for event in self.conn.receive_data(plain):
                self._event(event)
            out = self.conn.data_to_send()
            if out:
                self.tls.write(out)

    def _event(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            self.responses[ev.stream_id] = dict(ev.headers)
        elif isinstance(ev, h2.events.DataReceived):
            self.data.setdefault(ev.stream_id, bytearray()).extend(ev.data)
            if ev.flow_controlled_length:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.ended.add(ev.stream_id)
        elif isinstance(ev, h2.events.StreamReset):
            self.resets[ev.stream_id] = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev.error_code
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self.settings.update({k: v.new_value for k, v in ev.changed_settings.items()})
        elif isinstance(ev, h2.events.PingAckReceived):
            self.pongs += 1
        elif isinstance(ev, h2.events.SettingsAcknowledged):
            self.settings_acks += 1

    def wait(self, cond, what, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, "timed out waiting for %s" % what
            assert not (self.eof and not self.outgoing.pending and not self.incoming.pending
                        and not cond()), "the connection ended while waiting for %s" % what
            self.pump()
        return cond()

    def request(self, headers):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, headers)
        return sid

    def fetch(self, path):
        """A plain GET on a stream: (response headers, body)."""
        sid = self.request([(":method", "GET"), (":scheme", "https"), (":path", path),
                            (":authority", self.authority)])
        self.conn.end_stream(sid)
        self.wait(lambda: sid in self.ended or sid in self.resets, "the answer to GET " + path)
        return self.responses[sid], bytes(self.data.get(sid, b""))

    def get(self, path):
        """A plain GET on a stream: (status, body)."""
        headers, body = self.fetch(path)
        return int(headers[":status"]), body

    # --- WebSockets on streams (RFC 8441) ---------------------------------------
    def open_ws(self, path="/ws", origin=None, extra=()):
        """Sends an extended CONNECT; returns its stream id."""
        headers = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                   (":path", path), (":authority", self.authority),
                   ("sec-websocket-version", "13")]
        if origin is not None:
            headers.append(("origin", origin))
        return self.request(headers + list(extra))

    def status(self, sid):
        """The stream's response status, or None if it was reset first."""
        self.wait(lambda: sid in self.responses or sid in self.resets or self.goaway is not None,
                  "the answer on stream %d" % sid)
        return int(self.responses[sid][":status"]) if sid in self.responses else None

    def websocket(self, path="/ws", **kw):
        sid = self.open_ws(path, **kw)
        assert self.status(sid) == 200, (self.responses.get(sid), self.resets.get(sid))
        return sid

    def send(self, sid, opcode, payload, fin=True):
        self.queued.setdefault(sid, bytearray()).extend(frame(opcode, payload, fin))

    def _next_frame(self, sid):
        """(fin, opcode, payload) of the stream's next whole frame, or None."""
        got = parse_frame(self.data.get(sid, bytearray()))
        return None if got is None else (got[0], got[2], got[3])

    def recv(self, sid, timeout=TIMEOUT):
        """The next whole message on the stream: (opcode, payload)."""
        parts = self.frames.setdefault(sid, [])
        deadline = time.monotonic() + timeout
        while True:
            got = self._next_frame(sid)
            if got is not None:
                fin, opcode, payload = got
                parts.append((opcode, payload))
                if fin or opcode >= OP_CLOSE:
                    if opcode >= OP_CLOSE:
                        parts.pop()
                        return opcode, payload
                    first = parts[0][0]
                    data = b"".join(p for _, p in parts)
                    parts.clear()
                    return first, data
                continue
            assert time.monotonic() < deadline, "timed out waiting for a message on %d" % sid
            assert sid not in self.resets, "stream %d was reset (%r)" % (sid, self.resets[sid])
            assert not self.eof or self.incoming.pending, "the connection ended"
            self.pump()

    def echo(self, sid, message=b"ping"):
        opcode = OP_BINARY if isinstance(message, bytes) else OP_TEXT
        raw = message if isinstance(message, bytes) else message.encode()
        self.send(sid, opcode, raw)
        assert self.recv(sid) == (opcode, raw)

    def close_stream(self, sid, code=1000):
        """The close handshake on a stream: the server's close frame echoes
        `code`, and it ends the stream (END_STREAM, not a reset)."""
        self.send(sid, OP_CLOSE, struct.pack("!H", code))
        assert self.recv(sid) == (OP_CLOSE, struct.pack("!H", code))
        self.wait(lambda: sid in self.ended or sid in self.resets, "the end of stream %d" % sid)
        assert sid in self.ended, "stream %d reset: %r" % (sid, self.resets[sid])
