"""Large frames on the drop-in server. Builds for CPython 3.11+ read every
byte straight into the engine's buffer (`Engine.read_view` / `commit`),
sizing each read by the traffic; older builds read into a reused buffer of
their own and the rest of a large frame on its own. Every way reads and
frames can meet — frames of every size back to back in one write, runs of
equal frames (reads sized to fit them) crossing the largest read size, a
large frame trickling in pieces, a fragmented message, a client vanishing
mid-frame — must echo every byte in order."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

import polysocket.tornado
from polysocket import _native
from test_ordering import frame, raw_client, read_frames, run

KIB = 1024
MIB = 1024 * KIB


@pytest.fixture(autouse=True, params=["direct", "copied"])
def reads(request, monkeypatch):
    """Each test on both read paths: into the engine's buffer (3.11+
    builds) and through a buffer of ours (the path of older builds, forced
    here; connections choose when they open)."""
    if request.param == "direct" and not polysocket.tornado._DIRECT_READS:
        pytest.skip("read_view exists only in builds for CPython 3.11+")
    monkeypatch.setattr(polysocket.tornado, "_DIRECT_READS", request.param == "direct")
    return request.param


def payload(n: int) -> bytes:
    return os.urandom(n)


def test_frames_of_every_size_back_to_back(server):
    sizes = [10, 300 * KIB, 3, 2 * MIB, 70 * KIB, 1025, 1024, 125, 126, 65536, 65535, 1 * MIB]
    messages = [payload(n) for n in sizes]

    async def go():
        reader, writer = await raw_client(server.port)
        writer.write(b"".join(frame(0x2, m, masked=True) for m in messages))
        got = await read_frames(reader, len(messages))
        writer.close()
        return got

    assert run(go()) == [(0x2, m) for m in messages]


def test_runs_of_equal_frames_one_echo_at_a_time(server):
    # Each run makes the reads fit its frames; the next run, larger or
    # smaller, and the 1 MiB frames beyond the largest read must still be
    # read whole; a small frame between runs is read in a large read.
    sizes = [64 * KIB] * 4 + [3] + [200 * KIB] * 3 + [MIB] * 3 + [256 * KIB - 14] * 3 + [10 * KIB] * 3
    messages = [payload(n) for n in sizes]

    async def go():
        reader, writer = await raw_client(server.port)
        got = []
        for m in messages:
            writer.write(frame(0x2, m, masked=True))
            got += await read_frames(reader, 1)
        writer.close()
        return got

    assert run(go()) == [(0x2, m) for m in messages]


@pytest.mark.parametrize("piece", [1, 7, 1000, 4096, 65537])
def test_a_large_frame_arriving_in_pieces(server, piece):
    big, small = payload(600 * KIB + 3), payload(5)
    wire = frame(0x2, big, masked=True) + frame(0x2, small, masked=True)
    # The header and the first bytes in small steps (the reads that find
    # the frame), the rest in pieces of `piece` bytes then large strides.
    cuts = list(range(0, 64, 7 if piece > 1 else 1)) + list(range(64, len(wire), max(piece, 50_000)))

    async def go():
        reader, writer = await raw_client(server.port)
        for a, b in zip(cuts, cuts[1:] + [len(wire)]):
            writer.write(wire[a:b])
            await writer.drain()
            if a < 64 or b - a < 10_000:
                await asyncio.sleep(0.001)
        got = await read_frames(reader, 2)
        writer.close()
        return got

    assert run(go()) == [(0x2, big), (0x2, small)]


def test_a_fragmented_large_message(server):
    parts = [payload(n) for n in (200 * KIB, 1, 500 * KIB, 100 * KIB)]
    wire = frame(0x2, parts[0], masked=True, first=0x02)
    wire += frame(0x0, parts[1], masked=True, first=0x00)
    wire += frame(0x9, b"in between", masked=True)
    wire += frame(0x0, parts[2], masked=True, first=0x00)
    wire += frame(0x0, parts[3], masked=True, first=0x80)

    async def go():
        reader, writer = await raw_client(server.port)
        writer.write(wire)
        got = await read_frames(reader, 2)
        writer.close()
        return got

    assert run(go()) == [(0xA, b"in between"), (0x2, b"".join(parts))]


def test_a_client_vanishing_mid_frame_leaves_the_server_serving(server):
    async def go():
        reader, writer = await raw_client(server.port)
        writer.write(frame(0x2, payload(MIB), masked=True)[: 300 * KIB])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()
        reader, writer = await raw_client(server.port)
        m = payload(MIB + 1)
        writer.write(frame(0x2, m, masked=True))
        got = await read_frames(reader, 1)
        writer.close()
        return got == [(0x2, m)]

    assert run(go())


def server_engine() -> _native.Engine:
    """An engine on the server side of an RFC 6455 handshake."""
    headers = [
        ("Host", "example.com"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
    ]  # fmt: skip
    hs = _native.ServerHandshake("GET", "/", headers)
    assert hs.feed()
    return hs.accept()[1]


@pytest.mark.skipif(
    not hasattr(_native.Engine, "read_view"),
    reason="read_view exists only in builds for CPython 3.11+",
)
def test_the_read_view_lends_room_and_refuses_what_would_move_it():
    engine = server_engine()
    big = payload(100 * KIB)
    wire = frame(0x2, big, masked=True)
    assert list(engine.receive(wire[:1000])) == []
    assert engine.awaited == len(wire) - 1000
    view = engine.read_view(engine.awaited)
    assert len(view) == len(wire) - 1000 and not view.readonly
    # While the view is held, nothing may move the buffer under it.
    with pytest.raises(BufferError):
        engine.receive(b"x")
    with pytest.raises(BufferError):
        engine.read_view(10)
    engine.release_buffers()  # a no-op while lent, not a free
    view[: len(view)] = wire[1000:]
    view.release()
    with pytest.raises(ValueError):
        engine.commit(len(wire))  # more than the view held
    assert list(engine.commit(len(wire) - 1000)) == [(_native.BINARY, big)]
    with pytest.raises(ValueError):
        engine.commit(1)  # no view lent any more
    # `receive` forgets a view that was lent: its room may have moved.
    view = engine.read_view(10)
    view.release()
    assert list(engine.receive(frame(0x1, b"hi", masked=True))) == [(_native.TEXT, "hi")]
    with pytest.raises(ValueError):
        engine.commit(0)
