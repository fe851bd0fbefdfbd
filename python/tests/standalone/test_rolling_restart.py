"""A rolling restart under load: ``python -m polysocket echo --reuse-port
--drain-timeout 4`` serves 500 connections echoing all the time; a second
process starts on the port and the first gets SIGTERM. No connection is cut
before the drain timeout, every connection opened during the restart
succeeds (on the new process: the old one takes what the kernel queued
for it before closing its socket, and tcp_migrate_req moves the rest), the
old process's clients get 1001 at the timeout and reconnect, and the old
process exits."""

import asyncio
import signal
import subprocess
import sys
import time

import websockets

from conftest import free_port
from reuseport import migrate_requests

DRAIN = 4.0
CLIENTS = 500


def start(port, log):
    """The server's output goes to a file, not a pipe nobody reads (a full
    pipe would block the server on its next log line)."""
    out = open(log, "w+")
    p = subprocess.Popen([sys.executable, "-m", "polysocket", "echo", "--port", str(port),
                          "--reuse-port", "--drain-timeout", str(DRAIN)],
                         stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 15
    while not open(log).readline().startswith("echo server on"):
        assert p.poll() is None and time.monotonic() < deadline, open(log).read()
        time.sleep(0.05)
    return p


async def wait_listening(port):
    deadline = time.monotonic() + 15
    while True:
        try:
            async with websockets.connect("ws://127.0.0.1:%d/" % port, open_timeout=2):
                return
        except OSError:
            assert time.monotonic() < deadline, "nothing listens on %d" % port
            await asyncio.sleep(0.05)


async def client(port, i, log, stop):
    """Echoes every 100 ms; on a close, records it and reconnects once."""
    url = "ws://127.0.0.1:%d/" % port
    async with websockets.connect(url, max_queue=None) as ws:
        n = 0
        try:
            while not stop.is_set():
                text = "client %d message %d" % (i, n)
                await ws.send(text)
                assert await asyncio.wait_for(ws.recv(), 10) == text
                n += 1
                await asyncio.sleep(0.1)
            return
        except websockets.ConnectionClosed as e:
            log.append((time.monotonic(), e.rcvd.code if e.rcvd else None))
    async with websockets.connect(url) as ws:  # the new process takes it
        await ws.send("again")
        assert await asyncio.wait_for(ws.recv(), 10) == "again"


async def newcomers(port, until, opened):
    """Opens a connection every 20 ms; each must echo."""
    while time.monotonic() < until:
        async with websockets.connect("ws://127.0.0.1:%d/" % port, open_timeout=5) as ws:
            await ws.send("new")
            assert await asyncio.wait_for(ws.recv(), 5) == "new"
        opened.append(time.monotonic())
        await asyncio.sleep(0.02)


def test_rolling_restart_under_load(tmp_path):
    with migrate_requests():
        rolling_restart(tmp_path)


def rolling_restart(tmp_path):
    port = free_port()
    old = start(port, tmp_path / "old.log")
    new = None
    try:
        async def main():
            nonlocal new
            await wait_listening(port)
            closes, stop, opened = [], asyncio.Event(), []
            clients = [asyncio.ensure_future(client(port, i, closes, stop))
                       for i in range(CLIENTS)]
            await asyncio.sleep(1.0)
            assert not any(c.done() for c in clients), [c.exception() for c in clients if c.done()]
            new = start(port, tmp_path / "new.log")
            await asyncio.sleep(0.5)  # the new process listens
            t0 = time.monotonic()
            old.send_signal(signal.SIGTERM)
            await newcomers(port, t0 + DRAIN + 1.0, opened)
            await asyncio.wait_for(asyncio.gather(*clients), 30)
            stop.set()
            return t0, closes, opened

        t0, closes, opened = asyncio.run(main())
        assert len(closes) == CLIENTS, "%d of %d old clients closed" % (len(closes), CLIENTS)
        assert {code for _, code in closes} == {1001}
        first = min(t for t, _ in closes) - t0
        assert first >= DRAIN - 0.3, "a client was cut %.2fs after SIGTERM" % first
        assert len(opened) >= 50, "only %d connections during the restart" % len(opened)
        assert old.wait(timeout=15) == 0
        assert "Traceback" not in (tmp_path / "old.log").read_text()
    finally:
        for p in (old, new):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()  # the other one is still stopped
                    p.wait()
