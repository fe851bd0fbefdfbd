"""Clients of every draft against polysocket.tornado handlers inside a
Tornado application: polysocket.connect for each draft (with and without
compression), raw-socket hixie-75/76 with the spec's own handshake example,
draft restrictions, errors in handlers and bad configuration."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

import polysocket

DRAFTS = [
    "hixie-75", "hixie-76", "hybi-01", "hybi-02", "hybi-04", "hybi-05",
    "hybi-06", "hybi-07", "hybi-08", "rfc6455",
]  # fmt: skip
WITH_BINARY = DRAFTS[2:]  # hybi-01 on: binary, ping and pong
WITH_CLOSE_CODE = DRAFTS[6:]  # hybi-06 on: close frames carry a code
# What a client offering every extension gets from a compressing handler.
EXTENSION = {
    "hybi-04": "deflate-frame", "hybi-05": "deflate-frame", "hybi-06": "deflate-frame",
    "hybi-07": "permessage-deflate", "hybi-08": "permessage-deflate",
    "rfc6455": "permessage-deflate",
}  # fmt: skip


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("draft", DRAFTS)
def test_every_draft_echoes_through_the_handler(server, draft, compress):
    async def main():
        path = "/deflate" if compress else "/echo"
        ws = await polysocket.connect(server.url(path), draft=draft, subprotocols=["chat"])
        assert ws.draft == draft
        ext = EXTENSION.get(draft) if compress else None
        assert ws.extension == ext
        await ws.send("info")
        assert await ws.recv() == f"{draft} {ext} chat"
        big = "déjà vu " * 20000
        for message in ["hello", "", big, "€" * 3]:
            await ws.send(message)
            assert await ws.recv() == message
        if draft in WITH_BINARY:
            for message in [b"\x00\xff" * 40000, b"x"]:
                await ws.send(message)
                assert await ws.recv() == message
            assert await ws.ping(b"are you there") == b"are you there"
        else:
            with pytest.raises(ValueError):
                await ws.send(b"binary")
        await ws.close(1000 if draft in WITH_CLOSE_CODE else None)
        assert ws.closed
        if draft in WITH_CLOSE_CODE:
            assert ws.close_code == 1000  # echoed by the handler

    run(main())


@pytest.mark.parametrize("draft", ["hybi-06", "hybi-08", "rfc6455"])
def test_handler_closes_with_code_and_reason(server, draft):
    async def main():
        ws = await polysocket.connect(server.url("/echo"), draft=draft)
        await ws.send("close")
        assert await ws.recv() is None
        assert (ws.close_code, ws.close_reason) == (4001, "asked to")

    run(main())


@pytest.mark.parametrize("draft", ["hixie-76", "hybi-02"])
def test_handler_close_on_drafts_without_codes(server, draft):
    async def main():
        ws = await polysocket.connect(server.url("/echo"), draft=draft)
        await ws.send("close")
        assert await ws.recv() is None
        assert ws.closed

    run(main())


@pytest.mark.parametrize(
    "draft,extension",
    [
        ("hybi-04", "deflate-stream"),
        ("hybi-08", "deflate-stream"),
        ("hybi-07", "deflate-frame"),
        ("rfc6455", "deflate-frame"),
        ("hybi-05", "deflate-stream"),
    ],
)
def test_each_extension_on_its_drafts(server, draft, extension):
    async def main():
        ws = await polysocket.connect(server.url("/deflate9"), draft=draft, extensions=[extension])
        await ws.send("info")
        assert await ws.recv() == f"{draft} {extension} None"
        message = "compress me " * 5000
        await ws.send(message)
        assert await ws.recv() == message
        await ws.close()

    run(main())


def test_compression_is_on_the_wire(server):
    """A repetitive 100 KB message crosses as far fewer bytes."""

    async def main():
        ws = await polysocket.connect(server.url("/deflate"), draft="hybi-08")
        await ws.send("a" * 100_000)
        assert await ws.recv() == "a" * 100_000
        assert ws._engine.wire_bytes_in < 2000
        assert ws._engine.message_bytes_in == 100_000
        await ws.close()

    run(main())


# ---------------------------------------------------------------- raw hixie


def raw(port: int, request: bytes, then: bytes = b"", delay: float = 0.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(request)
    if then:
        time.sleep(delay)
        sock.sendall(then)
    return sock


def read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def test_raw_hixie76_spec_example(server):
    """draft-hixie-thewebsocketprotocol-76 section 1.3's handshake, with
    key3 sent 200 ms after the head: the MD5 answer must be the spec's."""
    request = (
        b"GET /echo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\nSec-WebSocket-Protocol: sample\r\n"
        b"Upgrade: WebSocket\r\nSec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
        b"Origin: http://example.com\r\n\r\n"
    )
    with raw(server.port, request, b"^n:ds[4U", delay=0.2) as sock:
        head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n"), head
        assert b"\r\nSec-WebSocket-Origin: http://example.com\r\n" in head
        assert b"\r\nSec-WebSocket-Location: ws://example.com/echo\r\n" in head
        assert read_exact(sock, 16) == b"8jKS'y:G*Co,Wxa-"
        sock.sendall(b"\x00hello\xff\x00info\xff")
        assert read_exact(sock, 7) == b"\x00hello\xff"
        assert read_exact(sock, 20) == b"\x00hixie-76 None None\xff"
        sock.sendall(b"\xff\x00")  # the close frame
        assert read_exact(sock, 2) == b"\xff\x00"
        assert sock.recv(1) == b""


def test_raw_hixie75(server):
    request = (
        b"GET /echo HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
        b"Host: example.com\r\nOrigin: http://example.com\r\n\r\n"
        b"\x00early\xff"  # pipelined with the request
    )
    with raw(server.port, request) as sock:
        head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 Web Socket Protocol Handshake\r\n"), head
        assert b"\r\nWebSocket-Location: ws://example.com/echo\r\n" in head
        assert read_exact(sock, 7) == b"\x00early\xff"


# ------------------------------------------------------- drafts and errors


def test_allowed_drafts_refuse_others(server):
    async def main():
        with pytest.raises(polysocket.HandshakeError) as e:
            await polysocket.connect(server.url("/rfc6455"), draft="hybi-08")
        _, status, headers = e.value.args
        assert status == 426
        assert ("Sec-Websocket-Version", "13") in headers
        with pytest.raises(polysocket.HandshakeError) as e:
            await polysocket.connect(server.url("/rfc6455"), draft="hixie-76")
        assert e.value.args[1] == 400
        ws = await polysocket.connect(server.url("/rfc6455"))
        await ws.send("info")
        assert await ws.recv() == "rfc6455 None None"
        await ws.close()

    run(main())


def test_exception_in_handler_is_logged_and_closes_with_1011(server, caplog):
    async def main():
        ws = await polysocket.connect(server.url("/fail"))
        await ws.send("boom")
        assert await ws.recv() is None
        assert ws.close_code == 1011
        # The server keeps serving.
        ws = await polysocket.connect(server.url("/echo"))
        await ws.send("still here")
        assert await ws.recv() == "still here"
        await ws.close()

    with caplog.at_level(logging.ERROR, logger="tornado.application"):
        run(main())
    errors = [r for r in caplog.records if r.name == "tornado.application"]
    assert len(errors) == 1, errors
    assert errors[0].getMessage().startswith("Uncaught exception")
    assert errors[0].exc_info[0] is RuntimeError
    assert "handler failed on 'boom'" in str(errors[0].exc_info[1])


def test_bad_allowed_drafts_is_a_clear_error(server, caplog):
    async def main():
        with pytest.raises(polysocket.HandshakeError) as e:
            await polysocket.connect(server.url("/misconfigured"))
        assert e.value.args[1] == 500

    with caplog.at_level(logging.ERROR, logger="tornado.application"):
        run(main())
    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.exc_info[0] is ValueError
    assert "hybi-99" in str(record.exc_info[1]) and "rfc6455" in str(record.exc_info[1])


def test_bad_client_arguments():
    async def main():
        with pytest.raises(ValueError, match="known drafts"):
            await polysocket.connect("ws://127.0.0.1:1/", draft="hybi-99")
        with pytest.raises(ValueError, match="compression_level"):
            await polysocket.connect("ws://127.0.0.1:1/", compression_level=12)
        with pytest.raises(ValueError, match="unknown extension"):
            await polysocket.connect("ws://127.0.0.1:1/", extensions=["gzip"])
        with pytest.raises(ValueError, match="ws://"):
            await polysocket.connect("http://127.0.0.1:1/")

    run(main())
