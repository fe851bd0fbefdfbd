"""Every draft through uvicorn to an ASGI app (examples/asgi/echo.py), on
each of uvicorn's HTTP implementations: polysocket.connect for each draft
with and without compression, hixie-76's own handshake example sent in one
segment (its key3 comes after the head, which uvicorn's HTTP layer read),
refusals before the upgrade with the right HTTP status, and the message
size limit crossed."""

from __future__ import annotations

import asyncio
import socket

import pytest
import websockets

import polysocket

DRAFTS = [
    "hixie-75", "hixie-76", "hybi-01", "hybi-02", "hybi-04", "hybi-05",
    "hybi-06", "hybi-07", "hybi-08", "rfc6455",
]  # fmt: skip
WITH_BINARY = DRAFTS[2:]
EXTENSION = {
    "hybi-04": "deflate-frame", "hybi-05": "deflate-frame", "hybi-06": "deflate-frame",
    "hybi-07": "permessage-deflate", "hybi-08": "permessage-deflate",
    "rfc6455": "permessage-deflate",
}  # fmt: skip
HTTP = ["h11", "httptools", "zttp"]
MAX_SIZE = 1 << 20


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


@pytest.fixture(scope="module", params=HTTP)
def echo(request, uvicorn_server):
    return uvicorn_server("examples.asgi.echo:app", "--http", request.param,
                          "--ws-max-size", str(MAX_SIZE))


@pytest.fixture(scope="module")
def plain(uvicorn_server):
    return uvicorn_server("examples.asgi.echo:app", "--ws-per-message-deflate", "false")


@pytest.mark.parametrize("draft", DRAFTS)
def test_every_draft_echoes(echo, draft):
    async def main():
        ws = await polysocket.connect(echo.url("/room?x=1"), draft=draft)
        assert (ws.draft, ws.extension) == (draft, EXTENSION.get(draft))
        for message in ["hello", "", "déjà vu " * 20000, "€" * 3]:
            await ws.send(message)
            assert await ws.recv() == message
        if draft in WITH_BINARY:
            for message in [b"\x00\xff" * 40000, b"x"]:
                await ws.send(message)
                assert await ws.recv() == message
        await ws.close()

    run(main())


@pytest.mark.parametrize("draft", ["hybi-04", "hybi-07", "rfc6455"])
def test_compression_off_negotiates_none(plain, draft):
    async def main():
        ws = await polysocket.connect(plain.url(), draft=draft)
        assert ws.extension is None
        await ws.send("plain")
        assert await ws.recv() == "plain"
        await ws.close()

    run(main())


def test_hixie76_key3_in_the_head_segment(echo):
    """The example of draft-hixie-76 section 1.3, head and key3 in one send:
    the answer is the example's own challenge response."""
    request = (
        b"GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\nSec-WebSocket-Protocol: sample\r\n"
        b"Upgrade: WebSocket\r\nSec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
        b"Origin: http://example.com\r\n\r\n^n:ds[4U"
    )
    with socket.create_connection(("127.0.0.1", echo.port), timeout=5) as s:
        s.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < 16:
            chunk = s.recv(4096)
            assert chunk, "closed after %r" % answer
            answer += chunk
        head, body = answer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"sec-websocket-location: ws://example.com/demo" in head.lower()
        assert body[:16] == b"8jKS'y:G*Co,Wxa-"
        s.sendall(b"\x00hixie\xff")
        assert s.recv(64) == b"\x00hixie\xff"


def test_unsupported_version_gets_426_with_the_versions(echo):
    request = (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 99\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", echo.port), timeout=5) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 426 "), answer
    assert b"sec-websocket-version: 13" in head


def test_message_over_ws_max_size_closes_1009(echo):
    async def main():
        async with websockets.connect(echo.url(), max_size=None) as ws:
            await ws.send("x" * MAX_SIZE)
            assert await ws.recv() == "x" * MAX_SIZE
            await ws.send("x" * (MAX_SIZE + 1))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 1009

    run(main())
