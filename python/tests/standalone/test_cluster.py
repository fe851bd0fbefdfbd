"""The standalone server in a cluster (docs/CLUSTER.md), over a real
``redis-server`` this test starts on a free port (persistence off) and
stops by PID: Python nodes (tests/standalone/cluster_node.py, one inline on
polysocket's loop, one threaded on asyncio's), the Rust chat node
(core/examples/chat_node.rs; ``POLYSOCKET_CHAT_NODE`` or target/*/examples)
and ``python -m polysocket chat --processes 2``, each a process of its own,
with clients of every draft family. The tests fail when redis-server or the
chat node is missing."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

import pytest
import websockets

import polysocket

from conftest import REPO, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = os.path.join(HERE, "cluster_node.py")


def run(coro: Any, timeout: float = 40) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Redis:
    """A redis-server of this test, stopped (and restartable) by PID."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return "redis://127.0.0.1:%d" % self.port

    def start(self) -> "Redis":
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is missing (apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        pytest.fail("redis-server did not start")

    def publish(self, channel: str, payload: bytes) -> None:
        """PUBLISH over a raw RESP connection."""
        parts = [b"PUBLISH", channel.encode(), payload]
        cmd = b"*3\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        with socket.create_connection(("127.0.0.1", self.port), 5) as s:
            s.sendall(cmd)
            assert s.recv(64).startswith(b":")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Proc:
    """A node process; ready once it printed a line starting with ``ready``."""

    def __init__(self, argv: List[str], ready: str, **kwargs: Any) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, **kwargs)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if select.select([self.proc.stdout], [], [], 0.1)[0]:
                line = self.proc.stdout.readline()
                if line.startswith(ready):
                    self.line = line.split()
                    return
                if not line:
                    break
        self.stop()
        pytest.fail("%s did not start (status %s)" % (argv, self.proc.poll()))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def python_node(redis: Redis, *extra: str, **kwargs: Any) -> Proc:
    port = free_port()
    p = Proc([sys.executable, NODE, str(port), redis.url, *extra], "ready", **kwargs)
    p.port = port
    return p


def rust_node(redis: Redis) -> Proc:
    exe = os.environ.get("POLYSOCKET_CHAT_NODE") or next(iter(
        glob.glob(os.path.join(REPO, "target", "*", "examples", "chat_node"))), None)
    if exe is None or not os.access(exe, os.X_OK):
        pytest.fail("no chat_node: "
                    "cargo build -p polysocket --features cluster --example chat_node")
    port = free_port()
    p = Proc([exe, "--port", str(port), "--cluster", redis.url, "--namespace", "test"], "chat node")
    p.port = port
    return p


@pytest.fixture
def redis():
    r = Redis().start()
    yield r
    r.kill()


@pytest.fixture
def procs():
    started: List[Proc] = []
    yield started
    for p in started:
        p.stop()


class Client:
    """A client of one draft family; ``events`` collects its JSON events."""

    def __init__(self, ws: Any, label: str) -> None:
        self.ws, self.label = ws, label
        self.events: List[Dict[str, Any]] = []
        self.answers: asyncio.Queue = asyncio.Queue()
        self.task = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, port: int, kind: str, name: Optional[str] = None) -> "Client":
        url = "ws://127.0.0.1:%d/chat" % port + ("?name=" + name if name else "")
        if kind == "websockets":
            return cls(await websockets.connect(url, compression="deflate"), kind)
        draft, _, plain = kind.partition("/")
        return cls(await polysocket.connect(url, draft=draft, compression=not plain), kind)

    async def _read(self) -> None:
        try:
            while True:
                m = await self.ws.recv()
                if m is None:
                    return
                e = json.loads(m) if m.startswith("{") else {"raw": m}
                if "event" in e:
                    self.events.append(e)
                else:
                    self.answers.put_nowait(e)
        except (websockets.ConnectionClosed, polysocket.ConnectionClosed):
            return

    async def ask(self, cmd: Dict[str, Any]) -> Dict[str, Any]:
        await self.ws.send(json.dumps(cmd))
        return await asyncio.wait_for(self.answers.get(), 10)

    def texts(self, publisher: str) -> List[str]:
        return [e["text"] for e in self.events if e.get("name") == publisher
                and e["event"] in ("message", "all")]

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()


KINDS = ["hixie-75", "hixie-76", "hybi-07/plain", "rfc6455/plain", "rfc6455", "websockets"]


async def until(check: Any, timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        await asyncio.sleep(0.05)


def test_four_nodes_every_draft_once_in_order(redis, procs):
    """Two standalone Python nodes, a Tornado drop-in node and the Rust
    chat node; every client of every node receives every publisher's group
    and namespace messages exactly once, in publish order (hixie-75
    clients included)."""
    procs += [python_node(redis), python_node(redis, "--threaded"), rust_node(redis),
              python_node(redis, "--tornado")]
    per_kind = 8  # 48 clients per node, plus the publishers
    # Publisher name -> how it publishes its i-th message.
    publish = {
        "A": lambda t: json.dumps({"op": "group", "text": t}),
        "B": lambda t: json.dumps({"op": "all", "text": t}),
        "R": lambda t: t,
        "T": lambda t: json.dumps({"op": "group", "text": t}),
    }

    async def main() -> None:
        clients = [await Client.open(p.port, kind, "c%d" % i)
                   for p in procs for kind in KINDS for i in range(per_kind)]
        total = len(clients)
        pubs = {n: await Client.open(p.port, "rfc6455", n) for p, n in zip(procs, "ABRT")}
        clients += pubs.values()

        async def converged() -> bool:
            answer = await pubs["A"].ask({"op": "presence", "group": "chat"})
            return answer["presence"] == total + 4 and len(answer["nodes"]) == 4
        await until(converged, 10, "presence of every node")

        # Until every client heard each publisher once, group subscriptions
        # may still be on their way.
        async def warm() -> bool:
            for n, c in pubs.items():
                await c.ws.send(publish[n]("warm"))
            await asyncio.sleep(0.1)
            return all("warm" in c.texts(p) for c in clients for p in pubs)
        await until(warm, 10, "every subscription")
        await asyncio.sleep(0.3)
        for c in clients:
            c.events.clear()

        n = 40
        for i in range(n):
            for name, c in pubs.items():
                await c.ws.send(publish[name]("%s%d" % (name, i)))
        want = {p: ["%s%d" % (p, i) for i in range(n)] for p in pubs}

        async def delivered() -> bool:
            return all(len(c.texts(p)) >= n for c in clients for p in pubs)
        await until(delivered, 15, "every delivery")
        await asyncio.sleep(0.5)  # duplicates would arrive meanwhile
        for c in clients:
            for p in pubs:
                assert c.texts(p) == want[p], (c.label, p)
        for name in "ABT":
            stats = (await pubs[name].ask({"op": "stats"}))["stats"]
            assert stats["connected"] and stats["malformed"] == 0 and stats["dropped"] == 0
        for c in clients:
            await c.close()

    run(main(), 60)


@pytest.mark.parametrize("owner", ["standalone", "tornado"])
def test_direct_commands_across_nodes(redis, procs, owner):
    """send_to / ping_to / close_to for a connection of another node (a
    standalone or a Tornado one, from the other kind); an id no live node
    has is WebSocketClosedError / False; a bad code ValueError."""
    kinds = [(), ("--tornado",)] if owner == "tornado" else [("--tornado",), ()]
    procs += [python_node(redis, *kinds[0]), python_node(redis, *kinds[1])]

    async def main() -> None:
        x = await Client.open(procs[0].port, "rfc6455", "x")
        y = await Client.open(procs[1].port, "rfc6455", "y")
        h = await Client.open(procs[1].port, "hixie-76", "h")
        yid, hid = (await y.ask({"op": "id"}))["id"], (await h.ask({"op": "id"}))["id"]
        assert yid >> 39 != (await x.ask({"op": "id"}))["id"] >> 39

        async def both_live() -> bool:
            return len((await x.ask({"op": "presence"}))["nodes"]) == 2
        await until(both_live, 10, "the other node")
        assert await x.ask({"op": "send", "to": yid, "text": "direct"}) == {"ok": None}
        assert await asyncio.wait_for(y.answers.get(), 5) == {"raw": "direct"}
        assert await x.ask({"op": "send", "to": hid, "text": "to hixie"}) == {"ok": None}
        assert await asyncio.wait_for(h.answers.get(), 5) == {"raw": "to hixie"}
        assert await x.ask({"op": "ping", "to": yid, "data": "p"}) == {"ok": None}
        xid = (await x.ask({"op": "id"}))["id"]
        # Its own node's: written before the answer.
        assert await x.ask({"op": "send", "to": xid, "text": "self"}) == {"raw": "self"}
        assert await asyncio.wait_for(x.answers.get(), 5) == {"ok": None}
        gone = (12345 << 39) | 1
        assert await x.ask({"op": "send", "to": gone, "text": "?"}) == {
            "error": "WebSocketClosedError"}
        assert await x.ask({"op": "close", "to": gone}) == {"ok": False}
        assert await x.ask({"op": "close", "to": yid, "code": 999}) == {"error": "ValueError"}
        assert await x.ask({"op": "close", "to": yid, "code": 4001, "reason": "bye"}) == {
            "ok": True}
        await asyncio.wait_for(y.task, 5)
        assert (y.ws.close_code, y.ws.close_reason) == (4001, "bye")
        # The owner no longer has it: handed to the bus, counted there.
        assert await x.ask({"op": "send", "to": yid, "text": "late"}) == {"ok": None}

        async def unroutable() -> bool:
            return (await h.ask({"op": "stats"}))["stats"]["unroutable"] >= 1
        await until(unroutable, 5, "the unroutable count")
        for c in (x, h):
            await c.close()

    run(main())


@pytest.mark.parametrize("killed", ["standalone", "tornado"])
def test_presence_after_sigkill(redis, procs, killed):
    """A SIGKILLed node leaves the counts within its expiry (1 s here)."""
    extra = ("--tornado",) if killed == "tornado" else ()
    procs += [python_node(redis), python_node(redis, *extra)]

    async def main() -> None:
        a = await Client.open(procs[0].port, "rfc6455", "a")
        others = [await Client.open(procs[1].port, k, "o") for k in KINDS]

        async def counted() -> bool:
            return (await a.ask({"op": "presence", "group": "chat"}))["presence"] == 7
        await until(counted, 10, "presence 7")
        assert (await a.ask({"op": "presence"}))["presence"] == 7
        procs[1].stop(signal.SIGKILL)
        killed = time.monotonic()

        async def left() -> bool:
            answer = await a.ask({"op": "presence", "group": "chat"})
            return answer["presence"] == 1 and len(answer["nodes"]) == 1
        await until(left, 3, "the dead node to leave")
        print("SIGKILLed node left the counts after %.2f s" % (time.monotonic() - killed))
        for c in others:
            c.task.cancel()
        await a.close()

    run(main())


def test_redis_restart_and_absent_at_start(procs, tmp_path):
    """A node started without Redis serves its clients locally; once Redis
    is up (and again after it was killed and restarted) messages cross.
    The bus's warnings reach Python's logging (logger polysocket.cluster)."""
    r = Redis()
    log = tmp_path / "node.log"
    with open(log, "w") as stderr:
        procs += [python_node(r, stderr=stderr), python_node(r)]

    async def crosses(a: Client, b: Client, tag: str) -> None:
        async def arrived() -> bool:
            await a.ws.send(json.dumps({"op": "group", "text": tag}))
            await asyncio.sleep(0.1)
            return tag in b.texts("a")
        await until(arrived, 15, tag + " to cross")

    async def main() -> None:
        a = await Client.open(procs[0].port, "rfc6455", "a")
        b = await Client.open(procs[1].port, "hixie-75", "b")
        await a.ws.send(json.dumps({"op": "group", "text": "local"}))
        await until(lambda: _async("local" in a.texts("a")), 5, "local delivery")
        assert not (await a.ask({"op": "stats"}))["stats"]["connected"]
        r.start()
        try:
            await crosses(a, b, "first")
            r.kill()
            await a.ws.send(json.dumps({"op": "group", "text": "down"}))
            await until(lambda: _async("down" in a.texts("a")), 5, "local delivery while down")
            t = time.monotonic()
            r.start()
            await crosses(a, b, "again")
            print("delivery resumed %.2f s after redis-server restarted" % (time.monotonic() - t))
            stats = (await a.ask({"op": "stats"}))["stats"]
            assert stats["reconnects"] >= 2
            assert "cluster bus down" in log.read_text()
        finally:
            r.kill()
        for c in (a, b):
            await c.close()

    run(main(), 60)


def test_garbage_on_the_channels_is_ignored_and_counted(redis, procs):
    """Foreign bytes and a truncated envelope on the namespace's channels:
    counted as malformed, nothing delivered, the node keeps serving."""
    procs += [python_node(redis), python_node(redis, "--tornado")]

    async def main() -> None:
        a = await Client.open(procs[0].port, "rfc6455", "a")
        t = await Client.open(procs[1].port, "hixie-75", "t")
        node = (await a.ask({"op": "id"}))["id"] >> 39

        async def both() -> bool:
            answer = await t.ask({"op": "presence", "group": "chat"})
            return answer["presence"] == 2 and len(answer["nodes"]) == 2
        await until(both, 10, "both nodes and their groups")
        await asyncio.sleep(0.2)  # the group subscriptions follow the joins
        for channel in ["all", "presence", "group:chat", "node:%d" % node]:
            for junk in [b"garbage", b"PS\x01\x02\x00\x00", b"PS\x09\x01"]:
                redis.publish("polysocket:test:" + channel, junk)

        async def counted() -> bool:
            return (await a.ask({"op": "stats"}))["stats"]["malformed"] >= 12
        await until(counted, 5, "malformed counted")

        async def crosses() -> bool:
            await a.ws.send(json.dumps({"op": "group", "text": "still"}))
            await asyncio.sleep(0.1)
            return "still" in t.texts("a")
        await until(crosses, 10, "delivery after the garbage")
        assert all(e.get("name") == "a" for c in (a, t) for e in c.events)
        # Not subscribed to the other node's channel: 3 channels here.
        assert (await t.ask({"op": "stats"}))["stats"]["malformed"] == 9
        for c in (a, t):
            await c.close()

    run(main())


async def _async(value: bool) -> bool:
    return value


def test_bad_cluster_configuration_is_a_clear_error():
    for kwargs, why in [
        ({"cluster": "http://127.0.0.1:6379", "namespace": "chat"}, "redis://"),
        ({"cluster": "redis://127.0.0.1:6379", "namespace": "a b"}, "namespace"),
        ({"cluster": "redis://127.0.0.1:6379"}, "namespace"),
        ({"cluster": "redis://127.0.0.1:6379", "namespace": "x", "cluster_expiry": 0.5},
         "node_expiry"),
    ]:
        with pytest.raises(ValueError, match=why):
            polysocket.Server([(r"/", polysocket.WebSocketHandler)], **kwargs)
    with pytest.raises(RuntimeError, match="not served"):
        polysocket.WebSocketHandler.broadcast("x")
    from polysocket.tornado import WebSocketHandler, join_cluster
    with pytest.raises(ValueError, match="redis://"):
        join_cluster("http://127.0.0.1:6379", "chat")
    with pytest.raises(ValueError, match="namespace"):
        join_cluster("redis://127.0.0.1:6379", "")
    with pytest.raises(RuntimeError, match="join_cluster"):
        WebSocketHandler.presence()
    out = subprocess.run([sys.executable, "-m", "polysocket", "chat", "--port", "0",
                          "--cluster", "http://x"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 2 and "redis://" in out.stderr


def test_processes_share_a_port_and_a_room(redis):
    """``python -m polysocket chat --processes 2``: both processes take
    connections on the one port; a message to one reaches the clients of
    the other through Redis; SIGTERM stops them all."""
    port = free_port()
    parent = subprocess.Popen(
        [sys.executable, "-m", "polysocket", "chat", "--port", str(port), "--processes", "2",
         "--cluster", redis.url, "--namespace", "procs"], stdout=subprocess.DEVNULL)

    async def main() -> None:
        by_node: Dict[int, Client] = {}
        deadline = time.monotonic() + 20
        while len(by_node) < 2:
            assert time.monotonic() < deadline, "one process took every connection"
            try:
                c = await Client.open(port, "rfc6455")
            except OSError:
                await asyncio.sleep(0.1)
                continue
            await until(lambda: _async(bool(c.events)), 5, "the join event")
            node = int(c.events[0]["name"].split("-")[1]) >> 39
            if node in by_node:
                await c.close()
            else:
                by_node[node] = c
        one, two = by_node.values()

        async def crossed() -> bool:
            await one.ws.send("hello")
            await asyncio.sleep(0.1)
            return any(e.get("text") == "hello" for e in two.events)
        await until(crossed, 10, "a message to cross processes")
        for c in (one, two):
            await c.close()

    try:
        run(main())
    finally:
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(20) == 0
    with socket.socket() as s:  # no listener is left (TIME_WAIT aside)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
