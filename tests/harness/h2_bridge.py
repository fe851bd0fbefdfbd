#!/usr/bin/env python3
"""An HTTP/1.1 WebSocket front for a server's RFC 8441 (WebSocket over
HTTP/2) streams, so that a client that speaks only HTTP/1.1 (the Autobahn
fuzzing client) tests the server's HTTP/2 sessions. asyncio + PyPI ``h2``.

    h2_bridge.py --listen-port P --server HOST:PORT [--ca PEM] [--server-name NAME]
                 [--per-client] [--verbose]

For every TCP client it reads the HTTP/1.1 upgrade request, opens an
extended CONNECT stream (``:method CONNECT``, ``:protocol websocket``,
``:scheme https``, ``:path``, ``:authority`` from the request's Host) to the
server over TLS with ALPN h2, passing the request's end-to-end headers
through (``sec-websocket-version``, ``sec-websocket-protocol``,
``sec-websocket-extensions``, ``origin``...; not Host, Sec-WebSocket-Key or
hop-by-hop ones), answers ``101`` with the ``Sec-WebSocket-Accept`` of the
client's key and the subprotocol and extensions the server agreed (any
other status is relayed with its body), then copies bytes both ways
unchanged:

* server DATA -> client: a stream's received bytes are acknowledged to
  HTTP/2 flow control (stream and connection window) only once the client
  socket took them (the write buffer drained);
* client -> server DATA: sent only within the stream's and the
  connection's send windows (it waits for WINDOW_UPDATE), in frames no
  larger than the server's SETTINGS_MAX_FRAME_SIZE;
* END_STREAM from the server -> the client's socket gets a FIN (write side
  shut); TCP EOF from the client -> END_STREAM; once both are done, or the
  server resets the stream after its END_STREAM, the socket is closed;
* RST_STREAM before the server's END_STREAM, a lost connection or GOAWAY
  (for the streams it covers) -> the client's socket is aborted (RST);
  an error on the client's socket -> RST_STREAM(CANCEL).

By default all clients share one HTTP/2 connection (their streams are
multiplexed on it; a new one is opened once the server closed it or sent
GOAWAY, e.g. after an idle timeout); --per-client opens one per client.
A stream the server refused unprocessed (REFUSED_STREAM, or above a GOAWAY's
last stream id) is retried on a new connection, up to 3 times.

Prints ``h2_bridge listening on 127.0.0.1:PORT`` once it accepts clients; on
SIGTERM/SIGINT it prints a one-line summary (sessions, HTTP/2 connections,
streams reset by the server, aborted clients) and exits 0.
"""

import argparse
import asyncio
import base64
import hashlib
import signal
import ssl
import sys

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 64 * 1024
HEAD_TIMEOUT = 15.0
RESPONSE_TIMEOUT = 15.0
# Our receive windows: what the server may send before the clients took it.
STREAM_WINDOW = 256 * 1024
CONNECTION_WINDOW = 4 * 1024 * 1024
READ_CHUNK = 64 * 1024
HOP_BY_HOP = {b"connection", b"upgrade", b"keep-alive", b"proxy-connection",
              b"transfer-encoding", b"te", b"host", b"sec-websocket-key"}
REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 426: "Upgrade Required",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable"}

STATS = {"sessions": 0, "upgraded": 0, "refused": 0, "connections": 0, "server_resets": 0,
         "aborted": 0, "retries": 0}
VERBOSE = False


def log(*args):
    print("h2_bridge:", *args, file=sys.stderr, flush=True)


def debug(*args):
    if VERBOSE:
        log(*args)


class Refused(Exception):
    """The server did not process the stream: it may be retried."""


class Stream:
    """One extended CONNECT stream's events, as its session consumes them."""

    def __init__(self, upstream, stream_id):
        self.upstream = upstream
        self.id = stream_id
        self.response = asyncio.get_running_loop().create_future()
        # ("data", bytes, flow-controlled length) | ("end",) | ("reset", code) | ("lost", why)
        self.inbox = asyncio.Queue()
        self.window = asyncio.Event()  # set on every WINDOW_UPDATE/SETTINGS that may open it
        self.remote_ended = False
        self.reset = False

    def fail(self, kind, what):
        self.reset = True
        if not self.response.done():
            self.response.set_exception(Refused(what) if kind == "refused" else ConnectionError(what))
        self.inbox.put_nowait(("lost", what))
        self.window.set()


class Upstream:
    """One TLS + HTTP/2 connection to the server."""

    def __init__(self, host, port, ssl_ctx, server_name):
        self.host, self.port, self.ssl_ctx, self.server_name = host, port, ssl_ctx, server_name
        self.streams = {}
        self.closed = False
        self.goaway = False
        self.settings_seen = None  # future: the server's first SETTINGS
        self.conn = None
        self.writer = None

    async def connect(self):
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.ssl_ctx, server_hostname=self.server_name)
        alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        if alpn != "h2":
            writer.close()
            raise ConnectionError("the server chose ALPN %r, not h2" % alpn)
        self.writer = writer
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
        })
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.settings_seen = asyncio.get_running_loop().create_future()
        self.flush()
        STATS["connections"] += 1
        self.reader_task = asyncio.create_task(self.read_loop(reader))
        await asyncio.wait_for(asyncio.shield(self.settings_seen), RESPONSE_TIMEOUT)
        enabled = self.conn.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL, 0)
        if enabled != 1:
            self.close()
            raise ConnectionError("the server did not send SETTINGS_ENABLE_CONNECT_PROTOCOL = 1")
        debug("h2 connection %d to %s:%d" % (STATS["connections"], self.host, self.port))

    @property
    def usable(self):
        return not self.closed and not self.goaway

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            self.writer.write(data)

    async def drain(self):
        if not self.closed:
            try:
                await self.writer.drain()
            except (ConnectionError, OSError):
                self.lost("write failed")

    def close(self):
        if not self.closed:
            self.closed = True
            self.writer.close()

    def lost(self, why):
        self.close()
        for stream in list(self.streams.values()):
            # A stream not answered yet is gone with the connection on the
            # server's side too (the server may close an idle connection
            # without GOAWAY as we open one): it may be retried.
            kind = "lost" if stream.response.done() else "refused"
            stream.fail(kind, "HTTP/2 connection lost: %s" % why)
        self.streams.clear()
        if self.settings_seen and not self.settings_seen.done():
            self.settings_seen.set_exception(ConnectionError(why))

    async def read_loop(self, reader):
        why = "closed by the server"
        try:
            while True:
                data = await reader.read(READ_CHUNK)
                if not data:
                    break
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError as e:
                    why = "protocol error: %r" % e
                    self.flush()
                    break
                for event in events:
                    self.on_event(event)
                self.flush()
        except (ConnectionError, OSError, ssl.SSLError) as e:
            why = repr(e)
        finally:
            debug("h2 connection ends:", why)
            self.lost(why)

    def on_event(self, event):
        if isinstance(event, h2.events.RemoteSettingsChanged):
            if not self.settings_seen.done():
                self.settings_seen.set_result(None)
            for stream in self.streams.values():
                stream.window.set()
            return
        if isinstance(event, h2.events.WindowUpdated):
            targets = self.streams.values() if event.stream_id == 0 else \
                [self.streams[event.stream_id]] if event.stream_id in self.streams else []
            for stream in targets:
                stream.window.set()
            return
        if isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = True
            last = event.last_stream_id if event.last_stream_id is not None else 0
            debug("GOAWAY", event.error_code, "last stream", last)
            for sid in [s for s in self.streams if s > last]:
                self.streams.pop(sid).fail("refused", "above GOAWAY's last stream id %d" % last)
            if event.error_code != h2.errors.ErrorCodes.NO_ERROR:
                # A connection error: every stream is gone.
                self.lost("GOAWAY %r" % event.error_code)
            return
        stream = self.streams.get(getattr(event, "stream_id", None))
        if stream is None:
            return
        if isinstance(event, h2.events.ResponseReceived):
            if not stream.response.done():
                stream.response.set_result(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            stream.inbox.put_nowait(("data", event.data, event.flow_controlled_length))
        elif isinstance(event, h2.events.StreamEnded):
            stream.remote_ended = True
            stream.inbox.put_nowait(("end",))
        elif isinstance(event, h2.events.StreamReset):
            self.streams.pop(stream.id, None)
            if not stream.response.done():
                what = "RST_STREAM %r before the response" % event.error_code
                stream.fail("refused" if event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
                            else "lost", what)
                return
            stream.reset = True
            if not stream.remote_ended:
                STATS["server_resets"] += 1
            stream.inbox.put_nowait(("reset", event.error_code))
            stream.window.set()

    def open_stream(self, headers):
        stream_id = self.conn.get_next_available_stream_id()
        stream = Stream(self, stream_id)
        self.streams[stream_id] = stream
        self.conn.send_headers(stream_id, headers, end_stream=False)
        self.flush()
        return stream

    def acknowledge(self, stream, n):
        if n and not self.closed:
            self.conn.acknowledge_received_data(n, stream.id)
            self.flush()

    async def send(self, stream, data):
        """Sends within the send windows; False once the stream is gone."""
        view = memoryview(data)
        while view:
            if stream.reset or self.closed:
                return False
            stream.window.clear()
            try:
                window = self.conn.local_flow_control_window(stream.id)
            except h2.exceptions.StreamClosedError:
                return False
            if window <= 0:
                await stream.window.wait()
                continue
            n = min(window, self.conn.max_outbound_frame_size, len(view))
            try:
                self.conn.send_data(stream.id, view[:n].tobytes())
            except h2.exceptions.StreamClosedError:
                return False
            view = view[n:]
            self.flush()
            await self.drain()
        return True

    def end_stream(self, stream):
        if not stream.reset and not self.closed:
            try:
                self.conn.end_stream(stream.id)
                self.flush()
            except h2.exceptions.StreamClosedError:
                pass

    def reset_stream(self, stream, code=h2.errors.ErrorCodes.CANCEL):
        if not stream.reset and not self.closed:
            stream.reset = True
            try:
                self.conn.reset_stream(stream.id, code)
                self.flush()
            except h2.exceptions.StreamClosedError:
                pass
        self.forget(stream)

    def forget(self, stream):
        self.streams.pop(stream.id, None)
        # Bytes received and never taken still count against the
        # connection's window: give them back.
        while not stream.inbox.empty():
            item = stream.inbox.get_nowait()
            if item[0] == "data":
                self.acknowledge(stream, item[2])


class Bridge:
    def __init__(self, args, ssl_ctx):
        self.args = args
        self.ssl_ctx = ssl_ctx
        self.host, _, port = args.server.rpartition(":")
        self.port = int(port)
        self.shared = None
        self.connecting = None

    async def upstream(self):
        if self.args.per_client:
            up = Upstream(self.host, self.port, self.ssl_ctx, self.args.server_name)
            await up.connect()
            return up
        # One connection at a time is being made; every session waits for it.
        while self.shared is None or not self.shared.usable:
            if self.connecting is None:
                self.connecting = asyncio.create_task(self._connect())
            try:
                await asyncio.shield(self.connecting)
            finally:
                if self.connecting is not None and self.connecting.done():
                    self.connecting = None
        return self.shared

    async def _connect(self):
        up = Upstream(self.host, self.port, self.ssl_ctx, self.args.server_name)
        await up.connect()
        self.shared = up

    async def handle(self, reader, writer):
        STATS["sessions"] += 1
        peer = writer.get_extra_info("peername")
        try:
            await self.session(reader, writer)
        except Exception as e:  # one session's failure ends that session only
            log("session %s: %r" % (peer, e))
            writer.transport.abort()

    async def session(self, reader, writer):
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ConnectionError):
            writer.transport.abort()
            return
        request = parse_request(head)
        if request is None:
            return await answer(writer, 400, [], b"not a WebSocket upgrade request\n")
        path, key, fields = request
        authority = next((v for n, v in fields if n == b"host"), b"localhost")
        headers = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"https"),
                   (b":path", path), (b":authority", authority)]
        headers += [(n, v) for n, v in fields if n not in HOP_BY_HOP]

        for attempt in range(4):
            up = await self.upstream()
            stream = up.open_stream(headers)
            try:
                response = await asyncio.wait_for(asyncio.shield(stream.response), RESPONSE_TIMEOUT)
                break
            except Refused as e:
                up.forget(stream)
                STATS["retries"] += 1
                debug("stream %d refused (%s): retrying" % (stream.id, e))
                if self.args.per_client:
                    up.close()
                continue
            except (ConnectionError, asyncio.TimeoutError) as e:
                up.reset_stream(stream)
                if self.args.per_client:
                    up.close()
                return await answer(writer, 502, [], ("no answer from the server: %r\n" % e).encode())
        else:
            return await answer(writer, 502, [], b"the server refused the stream 4 times\n")

        try:
            await self.relay(up, stream, response, key, reader, writer)
        finally:
            up.forget(stream)
            if self.args.per_client:
                up.close()

    async def relay(self, up, stream, response, key, reader, writer):
        status = int(dict(response).get(b":status", b"0"))
        if status != 200:
            # A refusal: its status, headers and body, as on HTTP/1.1.
            STATS["refused"] += 1
            body = b""
            while True:
                item = await stream.inbox.get()
                if item[0] != "data":
                    break
                body += item[1]
                up.acknowledge(stream, item[2])
            up.reset_stream(stream)
            fields = [(n, v) for n, v in response if not n.startswith(b":") and n not in HOP_BY_HOP
                      and n != b"content-length"]
            return await answer(writer, status, fields, body)

        STATS["upgraded"] += 1
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        lines = [b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket", b"Connection: Upgrade",
                 b"Sec-WebSocket-Accept: " + accept]
        for name, value in response:
            if name in (b"sec-websocket-protocol", b"sec-websocket-extensions"):
                lines.append(name + b": " + value)
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
        # The client has taken a chunk once it left our buffer for the kernel's.
        writer.transport.set_write_buffer_limits(high=0)
        debug("stream %d open (%s)" % (stream.id, dict(response).get(b"sec-websocket-extensions")))

        down = asyncio.create_task(self.down(up, stream, writer))
        upward = asyncio.create_task(self.up(up, stream, reader, writer))
        try:
            done, _ = await asyncio.wait({down, upward}, return_when=asyncio.FIRST_COMPLETED)
            if down in done and down.result() == "end":
                # The server's FIN was passed on: the client's EOF, or the
                # stream's reset, ends the session.
                await upward
            elif down in done:
                upward.cancel()
            else:
                outcome = upward.result()
                if outcome == "eof":
                    await down  # the server's END_STREAM or reset, in its time
                else:
                    down.cancel()
        finally:
            for task in (down, upward):
                task.cancel()
            if stream.remote_ended and not stream.reset and not up.closed:
                # Our half is still open only if the client never sent EOF:
                # the session is over, tell the server.
                up.reset_stream(stream, h2.errors.ErrorCodes.NO_ERROR)
            writer.close()

    async def down(self, up, stream, writer):
        """Server -> client; "end" after END_STREAM, "abort" after a reset or loss."""
        while True:
            item = await stream.inbox.get()
            kind = item[0]
            if kind == "data":
                writer.write(item[1])
                try:
                    await writer.drain()
                except (ConnectionError, OSError):
                    up.reset_stream(stream)
                    writer.transport.abort()
                    return "abort"
                up.acknowledge(stream, item[2])
            elif kind == "end":
                if writer.can_write_eof():
                    writer.write_eof()
                return "end"
            else:
                # RST_STREAM before END_STREAM, or the connection is gone: as a TCP reset.
                debug("stream %d: %s %r: abort the client" % (stream.id, kind, item[1]))
                STATS["aborted"] += 1
                writer.transport.abort()
                return "abort"

    async def up(self, up, stream, reader, writer):
        """Client -> server; "eof" after the client's FIN was sent as END_STREAM."""
        while True:
            try:
                data = await reader.read(READ_CHUNK)
            except (ConnectionError, OSError):
                up.reset_stream(stream)
                return "error"
            if not data:
                up.end_stream(stream)
                return "eof"
            if not await up.send(stream, data):
                # The stream is gone (reset by the server, after its
                # END_STREAM or not): what the client still sends has no
                # reader, as on a closed TCP socket.
                if stream.remote_ended:
                    return "eof"
                writer.transport.abort()
                return "error"


def parse_request(head):
    """(path, key, [(lowercase name, value)]) of an HTTP/1.1 upgrade request, or None."""
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or not parts[2].startswith(b"HTTP/1."):
        return None
    fields = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            return None
        fields.append((name.lower(), value.strip()))
    values = {}
    for n, v in fields:
        values.setdefault(n, []).append(v)
    upgrade = b",".join(values.get(b"upgrade", [])).lower()
    keys = values.get(b"sec-websocket-key", [])
    if b"websocket" not in upgrade or len(keys) != 1:
        return None
    return parts[1], keys[0], fields


async def answer(writer, status, fields, body):
    lines = [b"HTTP/1.1 %d %s" % (status, REASONS.get(status, "Error").encode())]
    lines += [n + b": " + v for n, v in fields]
    lines += [b"Content-Length: %d" % len(body), b"Connection: close"]
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    try:
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    writer.close()


async def main(args):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.ca)
    if args.ca is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    bridge = Bridge(args, ctx)
    server = await asyncio.start_server(bridge.handle, "127.0.0.1", args.listen_port, limit=MAX_HEAD)
    port = server.sockets[0].getsockname()[1]
    print("h2_bridge listening on 127.0.0.1:%d" % port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    print("h2_bridge: %d sessions (%d upgraded, %d refused by the server), %d HTTP/2 connection(s), "
          "%d stream(s) reset by the server before END_STREAM, %d client(s) aborted, %d retries"
          % (STATS["sessions"], STATS["upgraded"], STATS["refused"], STATS["connections"],
             STATS["server_resets"], STATS["aborted"], STATS["retries"]), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen-port", type=int, default=0)
    p.add_argument("--server", required=True, help="HOST:PORT of the TLS server")
    p.add_argument("--ca", help="PEM to verify the server with (default: no verification)")
    p.add_argument("--server-name", default="localhost", help="SNI and the name verified")
    p.add_argument("--per-client", action="store_true", help="one HTTP/2 connection per client")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args()
    VERBOSE = a.verbose
    asyncio.run(main(a))
