"""Scale: 10,000 concurrent connections on one echo server, each still
echoing; the server's memory per idle connection is measured and reported.

Every connection completes an RFC 6455 handshake and then sits idle; the
server's resident set (VmRSS of its process) is read before and after, and
at the end every connection sends one masked frame and must get its echo.
"""

import asyncio
import base64
import os
import resource

import pytest

CONNECTIONS = int(os.environ.get("POLYSOCKET_SCALE_CONNECTIONS", "10000"))
# A regression guard, printed with the figure. The benchmark target is
# 4 KiB per idle connection (docs/BENCHMARKS.md); this bound only catches
# a connection that suddenly pins buffers.
MAX_KIB_PER_CONNECTION = 16.0


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


REQUEST = (
    "GET /scale HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: %s\r\n\r\n"
)


async def open_one(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((REQUEST % key).encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    return reader, writer


async def echo_once(reader, writer, n):
    payload = ("conn %d" % n).encode()
    # Masked text frame with an all-zero key: the payload stays readable.
    writer.write(bytes([0x81, 0x80 | len(payload), 0, 0, 0, 0]) + payload)
    head = await reader.readexactly(2)
    assert head == bytes([0x81, len(payload)]), head
    assert await reader.readexactly(len(payload)) == payload


async def run(port, pid):
    limit = asyncio.Semaphore(500)

    async def opened():
        async with limit:
            return await open_one(port)

    # Warm up the server's allocator and worker threads first.
    warm = [await open_one(port) for _ in range(50)]
    await asyncio.sleep(0.3)
    before = rss_kib(pid)
    conns = await asyncio.gather(*(opened() for _ in range(CONNECTIONS)))
    await asyncio.sleep(1.0)
    after = rss_kib(pid)
    per_conn = (after - before) / CONNECTIONS
    print("\nscale: %d idle connections, server RSS %d -> %d KiB, %.2f KiB per connection"
          % (CONNECTIONS, before, after, per_conn))

    async def echoed(i, rw):
        async with limit:
            await echo_once(*rw, i)

    await asyncio.gather(*(echoed(i, rw) for i, rw in enumerate(conns)))
    for _, writer in conns + warm:
        writer.close()
    return per_conn


def test_ten_thousand_connections_each_echo(echo_server):
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < CONNECTIONS + 200:
        pytest.skip("descriptor limit %d is below %d connections" % (soft, CONNECTIONS))
    per_conn = asyncio.run(run(echo_server.port, echo_server.proc.pid))
    assert per_conn <= MAX_KIB_PER_CONNECTION, "%.2f KiB per idle connection" % per_conn
