"""The Python `websockets` library (asyncio client) against the echo server."""

import asyncio
import hashlib
import os
import random

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.protocol import State

MAX = 32 * 1024 * 1024


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def client(url, **kw):
    kw.setdefault("max_size", MAX)
    kw.setdefault("ping_interval", None)  # no keepalive pings in the middle of a test
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 10)
    return connect(url, **kw)


def test_permessage_deflate_negotiated(ws_url):
    async def go():
        async with client(ws_url) as ws:
            ext = ws.response.headers["Sec-WebSocket-Extensions"]
            assert ext.split(";")[0].strip() == "permessage-deflate", ext
            assert [type(e).__name__ for e in ws.protocol.extensions] == ["PerMessageDeflate"]
            await ws.send("compressed ✓ " * 100)
            assert await ws.recv() == "compressed ✓ " * 100
    run(go())


DEFLATE_OFFERS = {
    "server_no_context_takeover": dict(server_no_context_takeover=True),
    "client_no_context_takeover": dict(client_no_context_takeover=True),
    "server_max_window_bits=9": dict(server_max_window_bits=9),
    "server_max_window_bits=8": dict(server_max_window_bits=8),
    "client_max_window_bits=10": dict(client_max_window_bits=10),
    "both_no_context_takeover,window_bits=12": dict(
        server_no_context_takeover=True, client_no_context_takeover=True,
        server_max_window_bits=12, client_max_window_bits=12),
}


@pytest.mark.parametrize("offer", sorted(DEFLATE_OFFERS))
def test_permessage_deflate_parameters(ws_url, offer):
    """Each offer is accepted with its parameters, and a conversation whose
    messages repeat each other (so that context takeover and the window size
    matter) echoes intact."""
    params = DEFLATE_OFFERS[offer]

    async def go():
        factory = ClientPerMessageDeflateFactory(**params)
        async with client(ws_url, extensions=[factory], compression=None) as ws:
            answer = ws.response.headers["Sec-WebSocket-Extensions"]
            assert answer.split(";")[0].strip() == "permessage-deflate", answer
            for name in ("server_no_context_takeover", "server_max_window_bits"):
                if name in params:  # the server must confirm these (RFC 7692 7.1)
                    assert name in answer, answer
            rng = random.Random(offer)
            for i in range(30):
                text = "".join(rng.choice(["alpha ", "beta ", "gamma ", "κόσμε ", "%d " % i])
                               for _ in range(rng.randrange(1, 3000)))
                await ws.send(text)
                assert await ws.recv() == text
                blob = text.encode() + os.urandom(rng.randrange(0, 1000))
                await ws.send(blob)
                assert await ws.recv() == blob
    run(go())


def test_burst_without_waiting_keeps_order(ws_url):
    async def go():
        async with client(ws_url, max_queue=None) as ws:
            msgs = ["burst %d " % i * (i % 50 + 1) for i in range(500)]
            for m in msgs:
                await ws.send(m)
            for m in msgs:
                assert await ws.recv() == m
    run(go())


def test_without_compression_no_extension(ws_url):
    async def go():
        async with client(ws_url, compression=None) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            assert ws.protocol.extensions == []
            await ws.send("plain")
            assert await ws.recv() == "plain"
    run(go())


def test_text_and_binary(ws_url):
    texts = ["Hello, polysocket!", "κόσμε ✓ 𝄞 \u0000 end", "x" * 125, "y" * 126, "z" * 65536]
    blobs = [bytes(range(256)), b"\x00", os.urandom(70000)]

    async def go():
        async with client(ws_url) as ws:
            for t in texts:
                await ws.send(t)
                got = await ws.recv()
                assert isinstance(got, str) and got == t
            for b in blobs:
                await ws.send(b)
                got = await ws.recv()
                assert isinstance(got, bytes) and got == b
    run(go())


def test_empty_messages(ws_url):
    async def go():
        async with client(ws_url) as ws:
            await ws.send("")
            got = await ws.recv()
            assert got == "" and isinstance(got, str)
            await ws.send(b"")
            got = await ws.recv()
            assert got == b"" and isinstance(got, bytes)
    run(go())


@pytest.mark.parametrize("size", [1 << 20, 16 << 20], ids=["1MiB", "16MiB"])
@pytest.mark.parametrize("kind", ["random-binary", "compressible-text"])
def test_large_messages(ws_url, size, kind):
    if kind == "random-binary":
        payload = os.urandom(size)
    else:
        unit = "polysocket ✓ large message "  # 30 bytes in UTF-8
        payload = (unit * (size // len(unit.encode()) + 1)).encode()[:size].decode("utf-8", "ignore")

    async def go():
        async with client(ws_url) as ws:
            await ws.send(payload)
            got = await ws.recv()
            assert type(got) is type(payload)
            assert len(got) == len(payload)
            assert hashlib.sha256(got if isinstance(got, bytes) else got.encode()).digest() == \
                hashlib.sha256(payload if isinstance(payload, bytes) else payload.encode()).digest()
    run(go(), timeout=120)


def test_fragmented_send_echoed_whole(ws_url):
    async def go():
        async with client(ws_url) as ws:
            await ws.send(["frag", "mented ", "κόσμε"])  # an iterable is sent as fragments
            assert await ws.recv() == "fragmented κόσμε"
            await ws.send([b"\x01", b"\x02\x03"])
            assert await ws.recv() == b"\x01\x02\x03"
    run(go())


def test_ping_pong(ws_url):
    async def go():
        async with client(ws_url) as ws:
            for payload in (b"", b"ping payload", os.urandom(125)):
                waiter = await ws.ping(payload)  # resolved by the pong with this payload
                latency = await asyncio.wait_for(waiter, 5)
                assert latency >= 0
            # Pings interleaved with data keep their order relative to it.
            await ws.send("before")
            waiter = await ws.ping(b"middle")
            await ws.send("after")
            assert await ws.recv() == "before"
            assert await ws.recv() == "after"
            await asyncio.wait_for(waiter, 5)
    run(go())


def test_clean_close_with_code_and_reason(ws_url):
    async def go():
        async with client(ws_url) as ws:
            await ws.send("last words")
            assert await ws.recv() == "last words"
            await ws.close(1000, "goodbye ✓")
            assert ws.protocol.state is State.CLOSED
            assert ws.protocol.close_sent.code == 1000
            assert ws.protocol.close_sent.reason == "goodbye ✓"
            # The server answered the close with the same code...
            assert ws.protocol.close_rcvd is not None, "no close frame from the server"
            assert ws.protocol.close_rcvd.code == 1000
            assert ws.close_code == 1000
            assert ws.protocol.close_rcvd_then_sent is False
            # ...and then closed TCP itself: the close handshake completed.
            with pytest.raises(ConnectionClosedOK):
                await ws.recv()
    run(go())


def test_many_concurrent_clients(ws_url):
    """Twenty connections at once, interleaving messages."""
    async def one(i):
        async with client(ws_url) as ws:
            for j in range(50):
                msg = "client %d message %d " % (i, j) * (j + 1)
                await ws.send(msg)
                assert await ws.recv() == msg
            await ws.close()
            assert ws.close_code == 1000
            return i

    async def go():
        return await asyncio.gather(*(one(i) for i in range(20)))

    assert run(go()) == list(range(20))
