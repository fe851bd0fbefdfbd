"""Steady mixed load on one soak server, the server's resources sampled
throughout, and a verdict: the load side of scripts/soak.sh (issue 14,
"soak runs"). Standard library only; its own client, not polysocket's.

    python tests/harness/soak_client.py --face F --port P --pid PID --duration S
        --samples FILE [--workers 24] [--flood N,SIZE] [--sample-every S]

The server is one of the soak apps (core/examples/soak_server.rs,
tests/harness/soak_server.py, tests/harness/soak_server.php): it echoes
every message and answers `soak:` commands. The load, all at once:

* workers: connections opened one after another on every draft (hixie-75,
  hixie-76, hybi-07, hybi-08, RFC 6455), with permessage-deflate (with and
  without context takeover), x-webkit-deflate-frame or no compression,
  half of them members of a group; each sends text and binary messages
  from empty to 1 MiB (fragmented, with pings between, up to three in
  flight) and checks every echo, whole and in order; then ends cleanly
  (close handshake), or vanishes: between messages, in the middle of a
  frame (with a reset), right after sending a large message, or in the
  middle of its opening handshake;
* broadcasters: one per group, `soak:bcast` every half second; every
  member checks what it gets is whole, in order and without gaps (the
  broadcaster too, which must get each of its own);
* slow readers: every few seconds a connection asks for more than the
  server's send buffer holds (`soak:flood`) and does not read: the server
  must cut it off;
* the sampler: every --sample-every seconds the server's RSS, threads and
  open descriptors from /proc/PID, and what the app reports of itself
  (`soak:stats`: connections; tokio tasks; Python objects and allocated
  blocks; PHP memory_get_usage()), one JSON line each in --samples.

Verdict: after --warmup (a fraction of the run) the median of each
figure over the first --window of the rest is compared with its median
over the last --window: growth beyond --tolerance (5 %; and beyond a
small absolute slack for counts that move with the load, see SLACK) fails,
as do a lost, garbled, duplicated or reordered message, a slow reader not
cut off, and the server's death. Prints one JSON object (ok, counts,
growth per figure, first errors); exits 1 when not ok.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import socket
import statistics
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rawws import encode_frame  # noqa: E402
from scale_client import Failed, hixie76_key  # noqa: E402

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DRAFTS = ("hixie-75", "hixie-76", "hybi-07", "hybi-08", "rfc6455")
EXTENSIONS = {
    "none": None,
    "pmd": "permessage-deflate; client_max_window_bits",
    "pmd-nct": "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "deflate-frame": "x-webkit-deflate-frame",
}
# Figures that move with the load by a few units: growth must pass both
# the tolerance and this many units to count. RSS moves with the messages
# in flight (up to three of up to 1 MiB at once, each held while read,
# inflated and echoed) and with the allocator's high-water marks: growth
# under 4 MiB cannot be told from the load. A leak still shows: in malloc's
# live small blocks (heap_kib, Rust), Python's objects and blocks, PHP's
# memory_get_usage(), and in RSS once it passes the slack.
SLACK = {"fds": 8, "threads": 2, "connections": 8, "tasks": 16, "buffered": 4 << 20,
         "rss_kib": 4096, "heap_kib": 512}
TEXT = ("soak é€ 😀 " + "".join(chr(random.randint(0x20, 0x7E)) for _ in range(4093))) * 300
TIMEOUT = 60
BIG = 64 << 10


def frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """A client frame, masked (rawws.py builds it)."""
    return encode_frame(opcode, payload, fin, rsv=4 if rsv1 else 0)


def deflate(data: bytes) -> bytes:
    """One message (or frame) compressed alone: valid under any context."""
    co = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    return (co.compress(data) + co.flush(zlib.Z_SYNC_FLUSH))[:-4]


def size() -> int:
    r = random.random()
    if r < 0.55:
        return random.randint(0, 125)
    if r < 0.8:
        return random.randint(126, 16 << 10)
    if r < 0.95:
        return random.randint(16 << 10, 128 << 10)
    return random.randint(128 << 10, 1 << 20)


def payload(text: bool, n: int) -> bytes:
    if text:
        start = random.randrange(0, len(TEXT) - n - 1)
        return TEXT[start:start + n].encode()  # n characters: up to 4n bytes
    if random.random() < 0.5:
        return os.urandom(n)
    return (os.urandom(64) * (n // 64 + 1))[:n]  # compressible


class Conn:
    """One client connection of any draft."""

    def __init__(self, draft: str, reader, writer, ext: str | None):
        self.draft, self.reader, self.writer = draft, reader, writer
        self.hixie = draft.startswith("hixie")
        self.ext = ext  # "pmd" / "deflate-frame" when agreed
        self.inflater = zlib.decompressobj(-15)

    @classmethod
    async def open(cls, port: int, draft: str, ext: str = "none", query: str = "",
                   rcvbuf: int = 0, partial: bool = False) -> "Conn | None":
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=8 << 20)
        path = "/soak" + ("?" + query if query else "")
        head = "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (path, port)
        origin = "http://127.0.0.1:%d" % port
        proof = b""
        if draft == "hixie-75":
            req = (head + "Upgrade: WebSocket\r\nConnection: Upgrade\r\nOrigin: %s\r\n\r\n" % origin).encode()
        elif draft == "hixie-76":
            (k1, n1), (k2, n2) = hixie76_key(), hixie76_key()
            key3 = os.urandom(8)
            req = (head + "Upgrade: WebSocket\r\nConnection: Upgrade\r\nOrigin: %s\r\nSec-WebSocket-Key1: %s\r\n"
                   "Sec-WebSocket-Key2: %s\r\n\r\n" % (origin, k1, k2)).encode() + key3
            proof = hashlib.md5(struct.pack(">II", n1, n2) + key3).digest()
        else:
            key = base64.b64encode(os.urandom(16))
            version = {"hybi-07": "7", "hybi-08": "8"}.get(draft, "13")
            origin_header = "Origin" if version == "13" else "Sec-WebSocket-Origin"
            offer = EXTENSIONS[ext]
            req = (head + "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: %s\r\n%s: %s\r\n%s\r\n" % (
                       key.decode(), version, origin_header, origin,
                       "Sec-WebSocket-Extensions: %s\r\n" % offer if offer else "")).encode()
            proof = b"sec-websocket-accept: " + base64.b64encode(hashlib.sha1(key + GUID).digest()).lower()
        if partial:  # vanish in the middle of the opening handshake
            writer.write(req[:random.randrange(1, len(req))])
            await writer.drain()
            writer.transport.abort()
            return None
        writer.write(req)
        answer = await reader.readuntil(b"\r\n\r\n")
        if not answer.startswith(b"HTTP/1.1 101"):
            raise Failed("%s: %r" % (draft, answer.split(b"\r\n", 1)[0]))
        lower = answer.lower()
        if draft == "hixie-76":
            if await reader.readexactly(16) != proof:
                raise Failed("hixie-76: wrong challenge answer")
        elif proof and proof not in lower:
            raise Failed("%s: wrong Sec-WebSocket-Accept" % draft)
        agreed = None
        if b"sec-websocket-extensions: permessage-deflate" in lower:
            agreed = "pmd"
        elif b"sec-websocket-extensions: x-webkit-deflate-frame" in lower:
            agreed = "deflate-frame"
        elif b"sec-websocket-extensions" in lower:
            raise Failed("%s: unexpected extension %r" % (draft, answer))
        if ext != "none" and agreed is None:
            raise Failed("%s: %s offered, not agreed" % (draft, ext))
        return cls(draft, reader, writer, agreed)

    def encode(self, text: bool, data: bytes) -> bytes:
        """The message as this draft frames it: compressed or not,
        fragmented or not, a ping between fragments sometimes."""
        if self.hixie:
            return b"\x00" + data + b"\xff"
        opcode = 1 if text else 2
        compress = self.ext is not None and random.random() < 0.7
        parts = [data]
        if len(data) > 1 and random.random() < 0.25:
            cuts = sorted(random.sample(range(1, len(data)), min(3, len(data) - 1)))
            parts = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        if compress and self.ext == "pmd":  # the message is one DEFLATE stream, cut anywhere
            whole = deflate(data)
            step = max(1, len(whole) // len(parts) + 1)
            parts = [whole[i:i + step] for i in range(0, len(whole), step)] or [b""]
        out = []
        for i, part in enumerate(parts):
            rsv1 = compress and (self.ext == "deflate-frame" or i == 0)
            if compress and self.ext == "deflate-frame":
                part = deflate(part)
            out.append(frame(opcode if i == 0 else 0, part, fin=i == len(parts) - 1, rsv1=rsv1))
            if i < len(parts) - 1 and random.random() < 0.3:
                out.append(frame(9, b"soak ping"))
        return b"".join(out)

    def send(self, raw: bytes) -> None:
        self.writer.write(raw)

    async def recv(self) -> tuple[str, bytes]:
        """The next message: ("text" | "binary" | "close", data)."""
        r = self.reader
        if self.hixie:
            b = (await r.readexactly(1))[0]
            if b == 0x00:
                return "text", (await r.readuntil(b"\xff"))[:-1]
            if b == 0xFF and self.draft == "hixie-76":
                await r.readexactly(1)
                return "close", b""
            raise Failed("%s: frame type %02x" % (self.draft, b))
        parts, kind, compressed = [], None, False
        while True:
            b0, b1 = await r.readexactly(2)
            if b1 & 0x80:
                raise Failed("masked server frame")
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await r.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await r.readexactly(8))[0]
            data = await r.readexactly(n)
            op, rsv1 = b0 & 0x0F, bool(b0 & 0x40)
            if op in (9, 10):
                if op == 9:
                    self.send(frame(10, data))
                continue
            if op == 8:
                return "close", data
            if rsv1 and self.ext is None:
                raise Failed("RSV1 without an extension")
            if self.ext == "deflate-frame" and rsv1:
                data = self.inflater.decompress(data + b"\x00\x00\xff\xff")
            if op in (1, 2):
                if kind is not None:
                    raise Failed("data frame inside a fragmented message")
                kind, compressed = ("text" if op == 1 else "binary"), rsv1 and self.ext == "pmd"
            elif op != 0 or kind is None:
                raise Failed("unexpected opcode %d" % op)
            parts.append(data)
            if b0 & 0x80:
                data = b"".join(parts)
                if compressed:
                    data = self.inflater.decompress(data + b"\x00\x00\xff\xff")
                return kind, data

    async def close(self) -> None:
        """The close handshake (hybi: code 1000 and its echo; hixie-76:
        FF 00), then EOF. Messages still in flight (broadcasts) are read."""
        if self.draft == "hixie-75":
            self.writer.close()
            return
        self.send(b"\xff\x00" if self.hixie else frame(8, struct.pack("!H", 1000)))
        while True:
            try:
                kind, data = await self.recv()
            except asyncio.IncompleteReadError:
                if self.draft == "hixie-76":
                    break  # hixie-76 servers may just close
                raise Failed("EOF before the close frame")
            if kind == "close":
                if not self.hixie and data[:2] != struct.pack("!H", 1000):
                    raise Failed("close answered with %r" % data[:40])
                break
        await asyncio.wait_for(self.reader.read(), 10)
        self.writer.close()

    def vanish(self) -> None:
        """Gone without a word: a reset."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


class Soak:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.deadline = time.monotonic() + a.duration
        self.errors: list[str] = []
        self.counts = dict.fromkeys(("opened", "echoed", "bytes", "closed", "vanished", "bcast_sent",
                                     "bcast_received", "slow_cut", "samples"), 0)
        self.groups = ["g%d" % i for i in range(a.groups)]
        self.seq = dict.fromkeys(self.groups, 0)
        self.samples = open(a.samples, "w")
        # Large messages in flight at once: the server's peak memory (and
        # so its RSS) is bounded by the load, not by chance coincidences.
        self.big = asyncio.Semaphore(a.big)

    def fail(self, what: str) -> None:
        self.errors.append(what)
        print("soak %s: %s" % (self.a.face, what), file=sys.stderr, flush=True)

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    @staticmethod
    def bcast_text(group: str, seq: int) -> bytes:
        return ("soak:b %s %d %s" % (group, seq, "b" * (seq * 37 % 2000))).encode()

    def check_bcast(self, data: bytes, seen: dict) -> None:
        _, group, seq = data.decode().split(" ", 3)[:3]
        seq = int(seq)
        if data != self.bcast_text(group, seq):
            raise Failed("garbled broadcast %s %d" % (group, seq))
        last = seen.get(group)
        if last is not None and seq != last + 1:
            raise Failed("broadcast %s: %d after %d" % (group, seq, last))
        seen[group] = seq
        self.counts["bcast_received"] += 1

    async def expect(self, c: Conn, want: list, seen: dict) -> None:
        """Read until `want` (kind, data) pairs came back in order;
        broadcasts in between are checked on the way."""
        while want:
            kind, data = await asyncio.wait_for(c.recv(), TIMEOUT)
            if kind == "text" and data.startswith(b"soak:b "):
                self.check_bcast(data, seen)
                continue
            k, d = want.pop(0)
            if kind != k or data != d:
                raise Failed("%s: echo %s of %d bytes came back as %s of %d bytes%s" % (
                    c.draft, k, len(d), kind, len(data), "" if len(d) != len(data) else " (garbled)"))
            self.counts["echoed"] += 1
            self.counts["bytes"] += len(d)

    async def exchange(self, c: Conn, sizes: list, seen: dict) -> None:
        """Messages of these sizes sent at once, their echoes checked."""
        want = []
        for n in sizes:
            text = c.hixie or random.random() < 0.5
            data = payload(text, n)
            c.send(c.encode(text, data))
            want.append(("text" if text else "binary", data))
        await c.writer.drain()
        await self.expect(c, want, seen)

    async def worker(self, i: int) -> None:
        while self.running():
            draft = random.choice(DRAFTS)
            ext = "none" if draft.startswith("hixie") else random.choice(list(EXTENSIONS))
            group = random.choice(self.groups) if random.random() < 0.5 else None
            end = random.random()
            try:
                if end < 0.05:
                    await Conn.open(self.a.port, draft, ext, partial=True)
                    self.counts["vanished"] += 1
                    continue
                c = await asyncio.wait_for(Conn.open(self.a.port, draft, ext, "group=%s" % group if group else ""),
                                           TIMEOUT)
                self.counts["opened"] += 1
                seen: dict = {}
                for _ in range(random.randint(1, 30)):
                    sizes = [size() for _ in range(random.randint(1, 3))]
                    if max(sizes) > BIG:
                        async with self.big:
                            await self.exchange(c, sizes, seen)
                    else:
                        await self.exchange(c, sizes, seen)
                    if not self.running():
                        break
                if end < 0.15:  # a frame (or message) cut short, then a reset
                    data = payload(c.hixie, random.randint(1000, 200000))
                    raw = c.encode(c.hixie, data)
                    c.send(raw[:random.randrange(1, len(raw))])
                    await c.writer.drain()
                    c.vanish()
                    self.counts["vanished"] += 1
                elif end < 0.2:  # a large message sent, its echo never read
                    async with self.big:
                        c.send(c.encode(c.hixie, payload(c.hixie, 1 << 20)))
                        await c.writer.drain()
                        c.vanish()
                    self.counts["vanished"] += 1
                elif end < 0.25:  # between messages, without a close
                    c.writer.close()
                    self.counts["vanished"] += 1
                else:
                    await asyncio.wait_for(c.close(), TIMEOUT)
                    self.counts["closed"] += 1
            except Exception as e:  # noqa: BLE001 - every failure is reported
                if self.running():
                    self.fail("worker %d (%s, %s): %r" % (i, draft, ext, e))

    async def broadcaster(self, group: str) -> None:
        while self.running():
            try:
                c = await asyncio.wait_for(Conn.open(self.a.port, random.choice(DRAFTS), query="group=" + group),
                                           TIMEOUT)
                seen: dict = {}
                until = time.monotonic() + random.uniform(10, 40)
                while self.running() and time.monotonic() < until:
                    self.seq[group] += 1
                    seq = self.seq[group]
                    c.send(c.encode(True, b"soak:bcast " + self.bcast_text(group, seq)[len("soak:b "):]))
                    self.counts["bcast_sent"] += 1
                    while seen.get(group) != seq:  # its own broadcast must come back
                        kind, data = await asyncio.wait_for(c.recv(), TIMEOUT)
                        if kind != "text" or not data.startswith(b"soak:b "):
                            raise Failed("broadcaster got %s %r" % (kind, data[:40]))
                        self.check_bcast(data, seen)
                    await asyncio.sleep(0.5)
                await asyncio.wait_for(c.close(), TIMEOUT)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                if self.running():
                    self.fail("broadcaster %s: %r" % (group, e))

    async def slow_reader(self) -> None:
        n, each = self.a.flood
        while self.running():
            await asyncio.sleep(self.a.slow_every)
            draft = random.choice(DRAFTS)
            try:
                c = await asyncio.wait_for(Conn.open(self.a.port, draft, rcvbuf=16384), TIMEOUT)
                c.send(c.encode(True, b"soak:flood %d %d" % (n, each)))
                await c.writer.drain()
                await asyncio.sleep(2)  # not reading
                got = 0
                while True:
                    try:
                        chunk = await asyncio.wait_for(c.reader.read(1 << 20), 10)
                    except asyncio.TimeoutError:
                        raise Failed("not cut off: read %d bytes of %d, then nothing" % (got, n * each))
                    if not chunk:
                        break
                    got += len(chunk)
                c.writer.close()
                if got >= n * each:
                    raise Failed("not cut off: read all %d bytes" % got)
                self.counts["slow_cut"] += 1
            except ConnectionResetError:
                self.counts["slow_cut"] += 1
            except Exception as e:  # noqa: BLE001 - every failure is reported
                if self.running():
                    self.fail("slow reader (%s): %r" % (draft, e))

    def proc(self) -> dict:
        pid = self.a.pid
        with open("/proc/%d/status" % pid) as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        return {"rss_kib": int(status["VmRSS"].split()[0]), "threads": int(status["Threads"]),
                "fds": len(os.listdir("/proc/%d/fd" % pid))}

    async def sampler(self) -> None:
        c = await asyncio.wait_for(Conn.open(self.a.port, "rfc6455"), TIMEOUT)
        t0 = time.monotonic()
        while True:
            try:
                c.send(frame(1, b"soak:stats"))
                while True:
                    kind, data = await asyncio.wait_for(c.recv(), TIMEOUT)
                    if kind == "text" and data.startswith(b"soak:stats "):
                        break
                sample = {"t": round(time.monotonic() - t0, 1), **self.proc(), **json.loads(data[11:])}
            except Exception as e:  # noqa: BLE001 - every failure is reported
                self.fail("sampler: %r (server gone?)" % e)
                return
            self.samples.write(json.dumps(sample) + "\n")
            self.samples.flush()
            self.counts["samples"] += 1
            if not self.running():
                break
            await asyncio.sleep(min(self.a.sample_every, max(0.0, self.deadline - time.monotonic())))
        await c.close()

    def verdict(self) -> dict:
        with open(self.a.samples) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        t_end = rows[-1]["t"] if rows else 0
        start = self.a.duration * self.a.warmup
        width = self.a.duration * self.a.window
        first = [r for r in rows if start <= r["t"] < start + width]
        last = [r for r in rows if r["t"] > t_end - width]
        growth = {}
        for key in ("rss_kib", "heap_kib", "fds", "threads", "connections", "tasks", "buffered", "py_objects",
                    "py_blocks", "php_memory", "php_memory_real"):
            if not first or not last or key not in rows[0]:
                continue
            a, b = statistics.median(r[key] for r in first), statistics.median(r[key] for r in last)
            g = (b - a) / a if a else (float("inf") if b > SLACK.get(key, 0) else 0.0)
            grew = g > self.a.tolerance and b - a > SLACK.get(key, 0)
            growth[key] = {"first": a, "last": b, "growth": round(g, 4), "grew": grew}
            if grew:
                self.fail("%s grew %.1f %% (median %s -> %s)" % (key, 100 * g, a, b))
        if len(first) < 3 or len(last) < 3:
            self.fail("too few samples (%d, %d) for a verdict" % (len(first), len(last)))
        need = {"echoed": 100, "closed": 5, "vanished": 5, "bcast_received": 10, "slow_cut": 1}
        for key, n in need.items():
            if self.counts[key] < n:
                self.fail("only %d %s: the load did not run" % (self.counts[key], key))
        return growth

    async def run(self) -> dict:
        sampler = asyncio.ensure_future(self.sampler())
        tasks = [self.worker(i) for i in range(self.a.workers)]
        tasks += [self.broadcaster(g) for g in self.groups] + [self.slow_reader()]
        await asyncio.gather(*tasks)
        await sampler
        growth = self.verdict()
        return {"face": self.a.face, "ok": not self.errors, "duration": self.a.duration, **self.counts,
                "growth": growth, "errors": len(self.errors), "first_errors": self.errors[:5]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--face", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True, help="the server process, sampled in /proc")
    p.add_argument("--duration", type=float, default=180)
    p.add_argument("--samples", required=True, help="JSON lines, one per sample")
    p.add_argument("--workers", type=int, default=24)
    p.add_argument("--groups", type=int, default=3)
    p.add_argument("--big", type=int, default=3, help="exchanges with a message over 64 KiB at once")
    p.add_argument("--flood", type=lambda s: tuple(int(x) for x in s.split(",")), default=(16, 1 << 20),
                   help="N,SIZE: the slow reader asks for N messages of SIZE bytes")
    p.add_argument("--slow-every", type=float, default=5)
    p.add_argument("--sample-every", type=float, default=3)
    p.add_argument("--warmup", type=float, default=0.2)
    p.add_argument("--window", type=float, default=0.2)
    p.add_argument("--tolerance", type=float, default=0.05)
    result = asyncio.run(Soak(p.parse_args()).run())
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
