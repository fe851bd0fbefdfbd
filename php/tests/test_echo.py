"""The echo example against Python websockets: text, binary, sizes,
permessage-deflate, many clients, and the graceful stop."""

import asyncio
import hashlib
import os
import signal

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as sync_connect

ECHO = "examples/php/echo.php"


def test_text_and_binary(php_server):
    server = php_server(ECHO)
    with sync_connect(server.url + "/echo") as ws:
        for msg in ["hello", "", "ünïcødé 🎉", "x" * 70000]:
            ws.send(msg)
            assert ws.recv() == msg
        for msg in [b"\x00\x01\xff", b"", os.urandom(100000)]:
            ws.send(msg)
            assert ws.recv() == msg
        assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")


def test_large_messages(php_server):
    server = php_server(ECHO)
    with sync_connect(server.url + "/any/path", max_size=None) as ws:
        for data in [os.urandom(1 << 20), os.urandom(8 << 20)]:
            ws.send(data)
            assert hashlib.sha256(ws.recv()).digest() == hashlib.sha256(data).digest()
        text = "polysocket " * 100000
        ws.send(text)
        assert ws.recv() == text


def test_without_compression(php_server):
    server = php_server(ECHO)
    with sync_connect(server.url + "/echo", compression=None) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send("plain")
        assert ws.recv() == "plain"


def test_many_clients_in_order(php_server):
    server = php_server(ECHO)

    async def client(n):
        async with connect(server.url + "/echo") as ws:
            for i in range(50):
                await ws.send("%d-%d" % (n, i))
            return [await ws.recv() for _ in range(50)]

    async def main():
        return await asyncio.gather(*(client(n) for n in range(30)))

    results = asyncio.run(main())
    for n, got in enumerate(results):
        assert got == ["%d-%d" % (n, i) for i in range(50)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_clients_with_1001_and_run_returns(php_server, sig):
    server = php_server("php/tests/servers/apps.php")
    with sync_connect(server.url + "/echo") as ws:
        ws.send("before")
        assert ws.recv() == "before"
        assert server.signal(sig) == 0
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1001
    out = server.output()
    assert "Server stopped" in out and "run() returned" in out, out


def test_stop_from_a_callback(apps):
    with sync_connect(apps.url + "/echo") as other, sync_connect(apps.url + "/control") as ws:
        ws.send("stop")
        with pytest.raises(ConnectionClosed):
            other.recv(timeout=5)
        assert other.close_code == 1001
        assert apps.proc.wait(10) == 0
    assert "run() returned" in apps.output()
