"""Independent peers against the drop-in: Python `websockets` and
`websocket-client` against polysocket.tornado handlers, Tornado's own client
against them, the drop-in client against Tornado's own handler, and TLS
(wss://) for every handshake family."""

from __future__ import annotations

import asyncio

import pytest
import tornado.websocket
import websocket  # websocket-client
from websockets.asyncio.client import connect as websockets_connect
from websockets.exceptions import ConnectionClosed

import polysocket
from polysocket.tornado import WebSocketClosedError, websocket_connect


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


@pytest.mark.parametrize("path", ["/echo", "/deflate"])
def test_websockets_library(server, path):
    async def main():
        async with websockets_connect(server.url(path), max_size=None) as ws:
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
            if path == "/deflate":
                assert extensions.startswith("permessage-deflate")
            else:
                assert extensions is None
            for message in ["hello", "ünïcödé", "x" * 1_000_000, b"\x00\x01" * 100_000, b""]:
                await ws.send(message)
                assert await ws.recv() == message
            await ws.send("info")
            assert await ws.recv() == f"rfc6455 {'permessage-deflate' if path == '/deflate' else None} None"
            pong = await ws.ping(b"p")
            await asyncio.wait_for(pong, 5)
            await ws.send("close")
            with pytest.raises(ConnectionClosed) as e:
                await ws.recv()
            assert (e.value.rcvd.code, e.value.rcvd.reason) == (4001, "asked to")

    run(main())


def test_websockets_library_subprotocol_and_client_close(server):
    async def main():
        async with websockets_connect(server.url("/echo"), subprotocols=["other", "chat"]) as ws:
            assert ws.subprotocol == "chat"
            await ws.close(1001, "bye")
            assert ws.close_code == 1001

    run(main())


def test_websockets_library_handler_error_gives_1011(server):
    async def main():
        async with websockets_connect(server.url("/fail")) as ws:
            await ws.send("boom")
            with pytest.raises(ConnectionClosed) as e:
                await ws.recv()
            assert e.value.rcvd.code == 1011

    run(main())


def test_websocket_client_library(server):
    ws = websocket.create_connection(server.url("/deflate"), timeout=10, subprotocols=["chat"])
    try:
        assert ws.getsubprotocol() == "chat"
        ws.send("hello")
        assert ws.recv() == "hello"
        ws.send_binary(b"\xff" * 70000)
        assert ws.recv() == b"\xff" * 70000
        ws.ping(b"hi")
        opcode, frame = ws.recv_data_frame(control_frame=True)
        assert (opcode, frame.data) == (websocket.ABNF.OPCODE_PONG, b"hi")
    finally:
        ws.close(status=1000)
    assert ws.status == 101


@pytest.mark.parametrize("compression", [None, {}])
def test_tornado_client_against_drop_in(server, compression):
    async def main():
        ws = await tornado.websocket.websocket_connect(
            server.url("/deflate"), compression_options=compression, subprotocols=["chat"]
        )
        assert ws.selected_subprotocol == "chat"
        for message in ["hello", "z" * 200_000]:
            ws.write_message(message)
            assert await ws.read_message() == message
        ws.write_message(b"\x01\x02", binary=True)
        assert await ws.read_message() == b"\x01\x02"
        if compression is not None:
            assert ws.protocol._wire_bytes_in < 2000
        ws.close(1000, "done")

    run(main())


def test_drop_in_client_against_tornado_handler(server):
    async def main():
        ws = await websocket_connect(server.url("/pure"), compression_options={})
        assert ws.protocol.extension == "permessage-deflate"
        for message in ["hello", "y" * 300_000, b"\x00" * 10]:
            await ws.write_message(message, binary=isinstance(message, bytes))
            assert await ws.read_message() == message
        assert ws.protocol._message_bytes_out == 5 + 300_000 + 10
        assert ws.protocol._wire_bytes_in < 2000
        ws.close()
        with pytest.raises(WebSocketClosedError):
            ws.write_message("after close")

    run(main())


@pytest.mark.parametrize("draft", ["hixie-75", "hixie-76", "hybi-02", "hybi-08", "rfc6455"])
def test_wss_every_handshake_family(tls_server, tls, draft):
    async def main():
        ws = await polysocket.connect(tls_server.url("/deflate"), draft=draft, ssl_options=tls[1])
        await ws.send("info")
        assert (await ws.recv()).startswith(draft)
        await ws.send("secure")
        assert await ws.recv() == "secure"
        await ws.close()

    run(main())


def test_wss_websockets_library(tls_server, tls):
    async def main():
        async with websockets_connect(tls_server.url("/deflate"), ssl=tls[1]) as ws:
            await ws.send("over tls")
            assert await ws.recv() == "over tls"

    run(main())
