"""Many concurrent WebSocket connections on a mix of drafts, from one
process: the load side of scripts/scale.sh (issue 14, "as many connections
as the machine allows").

    python tests/harness/scale_client.py --port P --conns N --ready-file F
        [--host 127.0.0.1] [--source 127.0.0.2,127.0.0.3] [--path /]
        [--drafts hixie-75,hixie-76,hybi-07,rfc6455] [--hold-timeout 300]

Opens N connections (at most --concurrency handshakes at once), the i-th
on the i-th draft of --drafts and from the i-th source address of --source
(loopback has ~28,000 ephemeral ports per source address), and checks
every handshake answer (hixie-76's challenge, hybi's accept key). Then
writes the ready file (a JSON line: opened, failed, seconds) and holds the
connections idle until the file is removed, so that the caller can read
the server's memory; then every connection sends one text message, checks
its echo byte for byte, and closes. Prints one JSON object: conns, opened,
failed, open_s, echoed, errors, first_error. Its own client (stdlib only),
not polysocket's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import resource
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DRAFTS = ("hixie-75", "hixie-76", "hybi-07", "rfc6455")


class Failed(Exception):
    pass


def hixie76_key() -> tuple[str, int]:
    """A Sec-WebSocket-Key1/2 value and the number it stands for."""
    spaces = random.randint(1, 12)
    number = random.randint(0, 0xFFFFFFFF // spaces)
    digits = list(str(number * spaces))
    for _ in range(random.randint(1, 12)):
        digits.insert(random.randint(0, len(digits)), random.choice("abcdefXYZ%$#"))
    for _ in range(spaces):
        digits.insert(random.randint(1, len(digits) - 1), " ")
    return "".join(digits), number


def request(draft: str, host: str, port: int, path: str) -> tuple[bytes, bytes]:
    """The opening request of `draft` and what the answer must carry."""
    origin = "http://%s:%d" % (host, port)
    head = "GET %s HTTP/1.1\r\nHost: %s:%d\r\n" % (path, host, port)
    if draft == "hixie-75":
        req = head + "Upgrade: WebSocket\r\nConnection: Upgrade\r\nOrigin: %s\r\n\r\n" % origin
        return req.encode(), b""
    if draft == "hixie-76":
        (k1, n1), (k2, n2) = hixie76_key(), hixie76_key()
        key3 = os.urandom(8)
        req = head + (
            "Upgrade: WebSocket\r\nConnection: Upgrade\r\nOrigin: %s\r\n"
            "Sec-WebSocket-Key1: %s\r\nSec-WebSocket-Key2: %s\r\n\r\n" % (origin, k1, k2)
        )
        return req.encode() + key3, hashlib.md5(struct.pack(">II", n1, n2) + key3).digest()
    key = base64.b64encode(os.urandom(16))
    version, origin_header = ("7", "Sec-WebSocket-Origin") if draft == "hybi-07" else ("13", "Origin")
    req = head + (
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
        "Sec-WebSocket-Version: %s\r\n%s: %s\r\n\r\n" % (key.decode(), version, origin_header, origin)
    )
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    return req.encode(), b"sec-websocket-accept: " + accept.lower()


class Conn:
    def __init__(self, draft: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.draft, self.reader, self.writer = draft, reader, writer

    @classmethod
    async def open(cls, draft: str, host: str, port: int, path: str, source: str | None) -> Conn:
        local = (source, 0) if source else None
        reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        req, proof = request(draft, host, port, path)
        writer.write(req)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise Failed("%s: %r" % (draft, head.split(b"\r\n", 1)[0]))
        if draft == "hixie-76":
            if await reader.readexactly(16) != proof:
                raise Failed("hixie-76: wrong challenge answer")
        elif proof and proof not in head.lower():
            raise Failed("%s: wrong Sec-WebSocket-Accept" % draft)
        return cls(draft, reader, writer)

    async def echo(self, text: str) -> None:
        data = text.encode()
        if self.draft.startswith("hixie"):
            self.writer.write(b"\x00" + data + b"\xff")
            got = await self.reader.readuntil(b"\xff")
            if got != b"\x00" + data + b"\xff":
                raise Failed("%s: echo %r" % (self.draft, got[:40]))
            return
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
        self.writer.write(bytes([0x81, 0x80 | len(data)]) + mask + masked)
        first, second = await self.reader.readexactly(2)
        if first != 0x81 or second != len(data):
            raise Failed("%s: frame head %02x %02x" % (self.draft, first, second))
        got = await self.reader.readexactly(len(data))
        if got != data:
            raise Failed("%s: echo %r" % (self.draft, got[:40]))

    async def close(self) -> None:
        if not self.draft.startswith("hixie"):
            mask = os.urandom(4)
            code = bytes(b ^ mask[i] for i, b in enumerate(struct.pack(">H", 1000)))
            self.writer.write(b"\x88\x82" + mask + code[:2])
            try:
                await asyncio.wait_for(self.reader.read(), 5)  # the server's close, then EOF
            except (asyncio.TimeoutError, OSError):
                pass
        self.writer.close()


async def main(a: argparse.Namespace) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    drafts = a.drafts.split(",")
    sources = a.source.split(",") if a.source else [None]
    gate = asyncio.Semaphore(a.concurrency)
    errors: list[str] = []

    async def one(i: int) -> Conn | None:
        async with gate:
            try:
                return await asyncio.wait_for(
                    Conn.open(drafts[i % len(drafts)], a.host, a.port, a.path,
                              sources[i % len(sources)]), 30)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, Failed) as e:
                errors.append("open %d: %r" % (i, e))
                return None

    t0 = time.monotonic()
    conns = [c for c in await asyncio.gather(*(one(i) for i in range(a.conns))) if c]
    open_s = time.monotonic() - t0
    with open(a.ready_file, "w") as f:
        f.write(json.dumps({"opened": len(conns), "failed": a.conns - len(conns), "open_s": open_s}) + "\n")
    deadline = time.monotonic() + a.hold_timeout
    while os.path.exists(a.ready_file) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)

    async def check(i: int, c: Conn) -> bool:
        async with gate:
            try:
                await asyncio.wait_for(c.echo("scale %d %s" % (i, c.draft)), 30)
                await c.close()
                return True
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, Failed) as e:
                errors.append("echo %d: %r" % (i, e))
                return False

    echoed = sum(await asyncio.gather(*(check(i, c) for i, c in enumerate(conns))))
    return {"conns": a.conns, "opened": len(conns), "failed": a.conns - len(conns),
            "open_s": round(open_s, 2), "echoed": echoed, "errors": len(errors),
            "first_error": errors[0] if errors else None}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/")
    p.add_argument("--conns", type=int, required=True)
    p.add_argument("--source", default="", help="comma-separated source addresses")
    p.add_argument("--drafts", default=",".join(DRAFTS))
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--ready-file", required=True)
    p.add_argument("--hold-timeout", type=float, default=300)
    print(json.dumps(asyncio.run(main(p.parse_args()))), flush=True)
