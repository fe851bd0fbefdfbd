"""uvicorn servers with polysocket's WebSocket protocol, started on a free
port of 127.0.0.1 as a subprocess (its output in a file) and stopped by PID."""

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "harness"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Uvicorn:
    def __init__(self, app, log, *options):
        self.port = free_port()
        self.log = log
        argv = [sys.executable, "-m", "uvicorn", app, "--port", str(self.port),
                "--ws", "polysocket.asgi:WebSocketProtocol", *options]
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=open(log, "w"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.proc.poll() is None, "uvicorn exited:\n" + self.output()
                assert time.monotonic() < deadline, "uvicorn did not listen:\n" + self.output()
                time.sleep(0.05)

    def url(self, path="/"):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def output(self):
        return Path(self.log).read_text()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def uvicorn_server(tmp_path_factory):
    """Starts ``uvicorn APP --ws polysocket.asgi:WebSocketProtocol OPTIONS``;
    every server started is stopped at the end of the module."""
    started = []

    def start(app, *options):
        log = tmp_path_factory.mktemp("uvicorn") / "uvicorn.log"
        server = Uvicorn(app, log, *options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
