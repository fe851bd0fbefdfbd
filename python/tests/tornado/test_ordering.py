"""What goes out in which order, over real sockets, for the drop-in server,
the drop-in client and `polysocket.connect`: a burst of pings gets every
pong, in order (Autobahn 2.10/2.11), and a message followed by an invalid
frame gets its echo before the close (Autobahn 3.2, 4.1.3, 5.15...). The
peer is a raw socket speaking RFC 6455 byte by byte, so that the burst
arrives in one segment and nothing is coalesced or reordered for us."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct

import pytest

import polysocket
from polysocket.tornado import websocket_connect

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PINGS = [f"ping-{i}".encode() for i in range(10)]
INVALID = 0xC1  # FIN, RSV2, text: no extension gives RSV2 a meaning


def frame(opcode: int, payload: bytes, masked: bool, first: int | None = None) -> bytes:
    head = bytes([first if first is not None else 0x80 | opcode])
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + mask(payload, key)


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR with the repeated key, as one big integer (fast for MiBs)."""
    n = len(payload)
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack(">H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack(">Q", await reader.readexactly(8))
    key = await reader.readexactly(4) if b1 & 0x80 else None
    payload = await reader.readexactly(n)
    if key:
        payload = mask(payload, key)
    return b0 & 0x0F, payload


async def read_frames(reader: asyncio.StreamReader, count: int) -> list[tuple[int, bytes]]:
    return [await asyncio.wait_for(read_frame(reader), 5) for _ in range(count)]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


# ------------------------------------------------------------- drop-in server


async def raw_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def test_server_answers_every_ping_of_a_burst_in_order(server):
    async def main():
        reader, writer = await raw_client(server.port)
        writer.write(b"".join(frame(0x9, p, masked=True) for p in PINGS))
        assert await read_frames(reader, 10) == [(0xA, p) for p in PINGS]
        writer.close()

    run(main())


def test_server_echoes_a_message_before_failing_on_the_next_frame(server):
    async def main():
        reader, writer = await raw_client(server.port)
        writer.write(
            frame(0x1, b"hello", masked=True)
            + frame(0x1, b"bad", masked=True, first=INVALID)
            + frame(0x9, b"after", masked=True)
        )
        echo, close = await read_frames(reader, 2)
        assert echo == (0x1, b"hello")
        assert close[0] == 0x8 and struct.unpack(">H", close[1][:2])[0] == 1002
        assert await asyncio.wait_for(reader.read(), 5) == b""  # nothing after the close
        writer.close()

    run(main())


# -------------------------------------------------------------------- clients


class RawServer:
    """Accepts one client, answers its handshake, sends `burst` at once and
    hands back what the client then sent, frame by frame."""

    def __init__(self, burst: bytes, expect: int) -> None:
        self.burst = burst
        self.expect = expect
        self.received: asyncio.Future[list[tuple[int, bytes]]] = asyncio.Future()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        key = next(
            line.split(":", 1)[1].strip()
            for line in head.split("\r\n")
            if line.lower().startswith("sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
            + self.burst
        )
        try:
            self.received.set_result(await read_frames(reader, self.expect))
        except Exception as e:  # noqa: BLE001 - handed to the test
            self.received.set_exception(e)
        writer.close()

    def close(self) -> None:
        self.server.close()


async def polysocket_client(url: str, echo: int) -> None:
    ws = await polysocket.connect(url, compression=False)
    for _ in range(echo):
        message = await ws.recv()
        if message is None:
            return
        await ws.send(message)
    await asyncio.sleep(0.5)


async def tornado_client(url: str, echo: int) -> None:
    conn = await websocket_connect(url)
    for _ in range(echo):
        message = await conn.read_message()
        if message is None:
            return
        await conn.write_message(message)
    await asyncio.sleep(0.5)


CLIENTS = {"polysocket.connect": polysocket_client, "tornado drop-in": tornado_client}


@pytest.mark.parametrize("client", CLIENTS)
def test_client_answers_every_ping_of_a_burst_in_order(client):
    async def main():
        raw = RawServer(b"".join(frame(0x9, p, masked=False) for p in PINGS), expect=10)
        url = await raw.start()
        task = asyncio.ensure_future(CLIENTS[client](url, echo=0))
        try:
            assert await asyncio.wait_for(raw.received, 10) == [(0xA, p) for p in PINGS]
        finally:
            task.cancel()
            raw.close()

    run(main())


@pytest.mark.parametrize("client", CLIENTS)
def test_client_echo_goes_out_before_the_failure_of_the_next_frame(client):
    async def main():
        burst = (
            frame(0x1, b"hello", masked=False)
            + frame(0x1, b"bad", masked=False, first=INVALID)
            + frame(0x9, b"after", masked=False)
        )
        raw = RawServer(burst, expect=2)
        url = await raw.start()
        task = asyncio.ensure_future(CLIENTS[client](url, echo=1))
        try:
            echo, close = await asyncio.wait_for(raw.received, 10)
            assert echo == (0x1, b"hello")
            assert close[0] == 0x8 and struct.unpack(">H", close[1][:2])[0] == 1002
        finally:
            task.cancel()
            raw.close()

    run(main())
