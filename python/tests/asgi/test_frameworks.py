"""The examples in examples/asgi/ (FastAPI, Starlette, Django Channels)
served by real uvicorn with ``--ws polysocket.asgi:WebSocketProtocol``, each
in a subprocess on a free 127.0.0.1 port, once per HTTP implementation
(h11, httptools). Clients: ``websockets`` (RFC 6455 with permessage-deflate)
and ``polysocket.connect`` on old drafts (hixie-75, hixie-76, hybi-07).

Self-contained: nothing comes from a conftest."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from websockets.asyncio.client import connect as ws_connect

import polysocket

REPO = Path(__file__).resolve().parents[3]
HTTP_IMPLS = ["h11", "httptools"]
# Fails a test whose server stopped answering (pytest-timeout is the last
# resort).
TIMEOUT = 20


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``python -m uvicorn APP --ws polysocket.asgi:WebSocketProtocol`` in
    the repository root, its output in a file."""

    def __init__(self, app: str, http_impl: str, log: Path, env: dict[str, str]) -> None:
        self.app, self.http_impl, self.log_path = app, http_impl, log
        self.env = {**os.environ, **env}
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Another process may take the free port before uvicorn binds it:
        # try again on a new one.
        for _ in range(3):
            self.port = free_port()
            with open(self.log_path, "ab") as out:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", self.app,
                     "--host", "127.0.0.1", "--port", str(self.port),
                     "--ws", "polysocket.asgi:WebSocketProtocol", "--http", self.http_impl],
                    cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )  # fmt: skip
            if self.wait_accepting():
                return
            if self.proc.poll() is None:
                self.stop()
                break
        raise RuntimeError(f"uvicorn {self.app} did not start:\n{self.log()}")

    def wait_accepting(self) -> bool:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> tuple[int, str, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.getheader("content-type", ""), response.read().decode()
        finally:
            conn.close()


def serve(app: str, http_impl: str, tmp_path_factory, **env: str) -> Iterator[Server]:
    name = app.rsplit(".", 1)[-1].replace(":", "-")
    log = tmp_path_factory.mktemp(f"{name}-{http_impl}") / "uvicorn.log"
    server = Server(app, http_impl, log, env)
    server.start()
    try:
        yield server
    finally:
        server.stop()
    output = server.log()
    # An exception in the app or the protocol is logged, not raised.
    assert "Traceback" not in output, output
    assert "Exception in ASGI application" not in output, output


@pytest.fixture(scope="module", params=HTTP_IMPLS)
def fastapi_server(request, tmp_path_factory) -> Iterator[Server]:
    yield from serve("examples.asgi.fastapi_app:app", request.param, tmp_path_factory)


@pytest.fixture(scope="module", params=HTTP_IMPLS)
def starlette_server(request, tmp_path_factory) -> Iterator[Server]:
    yield from serve("examples.asgi.starlette_chat:app", request.param, tmp_path_factory)


@pytest.fixture(scope="module", params=HTTP_IMPLS)
def channels_server(request, tmp_path_factory) -> Iterator[Server]:
    yield from serve(
        "examples.asgi.channels_chat.asgi:application", request.param, tmp_path_factory,
        DJANGO_SETTINGS_MODULE="examples.asgi.channels_chat.settings",
    )  # fmt: skip


async def nothing_arrives(recv, within: float = 0.5) -> None:
    with pytest.raises(asyncio.TimeoutError):
        message = await asyncio.wait_for(recv(), within)
        pytest.fail(f"unexpected message {message!r}")


# ----------------------------------------------------------------- FastAPI


def test_fastapi_echo_with_websockets(fastapi_server):
    async def main():
        async with ws_connect(fastapi_server.url("/echo"), max_size=None) as ws:
            # permessage-deflate was offered (the default) and negotiated.
            assert [e.name for e in ws.protocol.extensions] == ["permessage-deflate"]
            header = ws.response.headers["Sec-WebSocket-Extensions"]
            assert header.split(";")[0].strip() == "permessage-deflate"
            for message in ["hello", "", "déjà vu €", b"\x00\xff\x01", b""]:
                await ws.send(message)
                assert await ws.recv() == message
            big_text = "0123456789abcdef" * (1 << 16)  # 1 MiB
            await ws.send(big_text)
            assert await ws.recv() == big_text
            big_bytes = os.urandom(1 << 20)  # 1 MiB, incompressible
            await ws.send(big_bytes)
            assert await ws.recv() == big_bytes
        assert ws.close_code == 1000

    run(main())


def test_fastapi_info_with_websockets(fastapi_server):
    async def main():
        async with ws_connect(fastapi_server.url("/info"), compression=None) as ws:
            assert ws.protocol.extensions == []
            assert await ws.recv() == "rfc6455 None"
            await ws.send("after info")
            assert await ws.recv() == "after info"

    run(main())


@pytest.mark.parametrize(
    "draft,options,extension",
    [
        ("hixie-75", {}, None),
        ("hixie-76", {}, None),
        # polysocket.connect offers every extension of the draft by default;
        # permessage-deflate wins on hybi-07.
        ("hybi-07", {}, "permessage-deflate"),
        ("hybi-07", {"extensions": ["deflate-frame"]}, "deflate-frame"),
        ("hybi-07", {"compression": False}, None),
    ],
    ids=["hixie-75", "hixie-76", "hybi-07", "hybi-07-deflate-frame", "hybi-07-plain"],
)
def test_fastapi_old_drafts_with_polysocket(fastapi_server, draft, options, extension):
    async def main():
        ws = await polysocket.connect(fastapi_server.url("/info"), draft=draft, **options)
        assert (ws.draft, ws.extension) == (draft, extension)
        # What the app read in scope["extensions"]["polysocket"].
        assert await ws.recv() == f"{draft} {extension}"
        for message in ["hello", "", "déjà vu €", "x" * 200_000]:
            await ws.send(message)
            assert await ws.recv() == message
        if draft.startswith("hixie"):
            with pytest.raises(ValueError):
                await ws.send(b"no binary on hixie drafts")
        else:
            await ws.send(b"\x00\xff" * 1000)
            assert await ws.recv() == b"\x00\xff" * 1000
        await ws.close()
        assert ws.closed

    run(main())


def test_fastapi_echo_with_polysocket_hixie76(fastapi_server):
    async def main():
        ws = await polysocket.connect(fastapi_server.url("/echo"), draft="hixie-76")
        await ws.send("first")  # /echo sends nothing before the echo
        assert await ws.recv() == "first"
        await ws.close()

    run(main())


def test_fastapi_plain_http(fastapi_server):
    status, content_type, body = fastapi_server.get("/")
    assert status == 200
    assert content_type.startswith("text/html")
    assert "<code>/echo</code>" in body and "<code>/info</code>" in body


# --------------------------------------------------------------- Starlette


def test_starlette_chat_broadcasts_to_every_client(starlette_server):
    async def main():
        url = starlette_server.url("/chat")
        clients = [await ws_connect(url).__aenter__() for _ in range(3)]
        old = await polysocket.connect(url, draft="hixie-76")
        assert old.draft == "hixie-76"
        try:
            await clients[0].send("hello everyone")
            for ws in clients:
                assert await ws.recv() == "hello everyone"
            assert await old.recv() == "hello everyone"

            await old.send("from hixie-76")
            for ws in clients:
                assert await ws.recv() == "from hixie-76"
            assert await old.recv() == "from hixie-76"

            # One leaves; the others still get every message.
            await clients[2].close()
            await clients[1].send("after a leave")
            for ws in clients[:2]:
                assert await ws.recv() == "after a leave"
            assert await old.recv() == "after a leave"
            await nothing_arrives(clients[0].recv, 0.2)
        finally:
            for ws in clients:
                await ws.close()
            await old.close()

    run(main())


# ---------------------------------------------------------------- Channels


def test_channels_chat_relays_within_a_room(channels_server):
    async def main():
        a1 = await ws_connect(channels_server.url("/ws/chat/lobby/")).__aenter__()
        a2 = await polysocket.connect(channels_server.url("/ws/chat/lobby/"), draft="hixie-76")
        b = await ws_connect(channels_server.url("/ws/chat/other/")).__aenter__()
        try:
            await a1.send("to the lobby")
            assert await a1.recv() == "to the lobby"
            assert await a2.recv() == "to the lobby"
            await nothing_arrives(b.recv)

            await a2.send("hixie-76 in the lobby")
            assert await a1.recv() == "hixie-76 in the lobby"
            assert await a2.recv() == "hixie-76 in the lobby"

            await b.send("only for other")
            assert await b.recv() == "only for other"
            # The lobby's next message is its own, not the other room's.
            await a1.send("lobby again")
            assert await a1.recv() == "lobby again"
            assert await a2.recv() == "lobby again"
        finally:
            await a1.close()
            await a2.close()
            await b.close()

    run(main())


def test_channels_plain_http(channels_server):
    status, content_type, body = channels_server.get("/")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert "/ws/chat/<room>/" in body
