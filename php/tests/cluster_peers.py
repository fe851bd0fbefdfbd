"""The peers of the cluster tests: a real redis-server on a free port
(persistence off, stopped by PID), the nodes of the other faces — the Rust
chat node (core/examples/chat_node.rs) and the Python standalone node
(python/tests/standalone/cluster_node.py, the Python suite's own, run by the
interpreter of the venv scripts/test-python.sh builds) — WebSocket clients
of every draft family, and the fixtures that start and stop them.
"""

import json
import os
import shutil
import socket
import subprocess
import time

import pytest
from conftest import REPO, free_port, raw_open
from rawws import OP_CLOSE, OP_PING, OP_TEXT, Conn
from websockets.sync.client import connect

CHAT_NODE = os.environ.get(
    "POLYSOCKET_CHAT_NODE", os.path.join(REPO, "target", "release", "examples", "chat_node"))
# The PHP suite's venv has no polysocket package: the Python node runs in
# the venv that scripts/test-python.sh builds (scripts/test-php.sh builds it
# when it is missing or stale).
PYTHON = os.environ.get(
    "POLYSOCKET_PYTHON", os.path.join(REPO, "target", "python-venv", "bin", "python"))
PYTHON_NODE = os.path.join(REPO, "python", "tests", "standalone", "cluster_node.py")
PHP_NODE = "php/tests/servers/cluster.php"
DRAFTS = ("hixie-75", "hixie-76", "hybi-07", "rfc6455", "rfc6455-deflate")


class Redis:
    """redis-server on `port` (a free one by default), no persistence."""

    def __init__(self, tmp, port=None):
        self.port = port or free_port()
        self.tmp = tmp
        self.proc = None

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is missing (scripts/test-php.sh installs it with apt)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if self.command(b"PING") == b"+PONG\r\n":
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def command(self, *args):
        """One command in RESP; the raw first reply line."""
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(out)
            return s.recv(1024)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def php_node(php_server, redis_url, namespace, *args):
    """A PHP daemon of the cluster (servers/cluster.php, heartbeat 0.2 s)."""
    return php_server(PHP_NODE, "--cluster", redis_url, "--namespace", namespace,
                      "--heartbeat", "0.2", "--expiry", "1", *args)


class NodeProcess:
    """A node of another face on a free port; its output is collected in a
    file, and it is up once that output contains `ready`."""

    def __init__(self, tmp, name, argv, ready):
        self.log_path = os.path.join(tmp, "%s-%d.log" % (name, self.port))
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.time() + 15
        while time.time() < deadline:
            assert self.proc.poll() is None, self.output()
            if ready in self.output():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("%s did not start:\n%s" % (name, self.output()))

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()


class RustNode(NodeProcess):
    """core/examples/chat_node: every client of /chat is in the group 'chat';
    a text message goes to the group as {"event":"message","name","text"}."""

    def __init__(self, tmp, redis_url, namespace):
        if not os.path.exists(CHAT_NODE):
            pytest.fail("%s is missing: cargo build --release -p polysocket --features cluster "
                        "--example chat_node" % CHAT_NODE)
        self.port = free_port()
        super().__init__(tmp, "chat-node", [CHAT_NODE, "--port", str(self.port), "--cluster",
                                            redis_url, "--namespace", namespace], "chat node")


class PythonNode(NodeProcess):
    """The Python standalone server (cluster_node.py, namespace 'test',
    heartbeat 0.2 s): every client of /chat is in the group 'chat'; the
    commands of its docstring drive the handler's class-level cluster
    helpers (Client.ask)."""

    def __init__(self, tmp, redis_url):
        check = subprocess.run([PYTHON, "-c", "import polysocket"], capture_output=True,
                               text=True) if os.access(PYTHON, os.X_OK) else None
        if check is None or check.returncode != 0:
            pytest.fail("%s cannot import polysocket (%s): run scripts/test-python.sh first (it "
                        "builds the package into target/python-venv; so does scripts/test-php.sh "
                        "when it is missing or stale) or set POLYSOCKET_PYTHON"
                        % (PYTHON, check.stderr.strip().splitlines()[-1] if check else "missing"))
        self.port = free_port()
        super().__init__(tmp, "python-node", [PYTHON, PYTHON_NODE, str(self.port), redis_url],
                         "ready")


class Client:
    """A client of one draft family, sending and receiving text."""

    def __init__(self, draft, port, path):
        self.draft = draft
        self.ws = self.conn = None
        if draft == "rfc6455-deflate":
            # Unbounded: with backpressure, one that many unread events stalled
            # would not read its close handshake.
            self.opened = connect("ws://127.0.0.1:%d/%s" % (port, path), compression="deflate",
                                  open_timeout=10, max_queue=None)
            self.ws = self.opened.__enter__()
            assert self.ws.response.headers.get("Sec-WebSocket-Extensions", "").startswith(
                "permessage-deflate")
        elif draft in ("hybi-07", "rfc6455"):
            self.conn = raw_open(port, 7 if draft == "hybi-07" else 13, path="/" + path)
        else:
            self.conn = Conn(port)
            # Same origin: the Python node refuses a cross-origin one (Tornado's rule).
            head = ("GET /%s HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
                    "Host: 127.0.0.1:%d\r\nOrigin: http://127.0.0.1:%d\r\n"
                    % (path, port, port)).encode()
            if draft == "hixie-76":
                head += (b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
                         b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n\r\n^n:ds[4U")
                self.conn.send(head)
                assert self.conn.read_response(body=16).status == 101
            else:
                self.conn.send(head + b"\r\n")
                assert self.conn.read_response(body=0).status == 101

    def send(self, text):
        if self.ws:
            self.ws.send(text)
        elif self.draft.startswith("hixie"):
            self.conn.send(b"\x00" + text.encode() + b"\xff")
        else:
            self.conn.send_frame(OP_TEXT, text.encode())

    def recv(self, timeout=10):
        """The next text message; ("close", code) or ("ping", data) for those."""
        if self.ws:
            return self.ws.recv(timeout)
        self.conn.sock.settimeout(timeout)
        if self.draft.startswith("hixie"):
            return self.conn.read_until(b"\xff")[1:-1].decode()
        while True:
            fin, rsv, opcode, payload = self.conn.read_frame()
            if opcode == OP_TEXT:
                return payload.decode()
            if opcode == OP_CLOSE:
                return ("close", int.from_bytes(payload[:2], "big"), payload[2:].decode())
            if opcode == OP_PING:
                return ("ping", payload)

    def event(self, timeout=10):
        return json.loads(self.recv(timeout))

    def call(self, **command):
        """A command to a test PHP node; its result (other events skipped)."""
        self.send(json.dumps(command))
        while True:
            e = self.event()
            if e.get("event") == "result":
                return e["value"]

    def ask(self, **command):
        """A command to a Python node (cluster_node.py); its answer, the
        next JSON object without an "event" (events skipped)."""
        self.send(json.dumps(command))
        while True:
            e = self.event()
            if "event" not in e:
                return e

    def direct(self, timeout=10):
        """The next message that is not a JSON event: a direct send's text,
        or ("close", code, reason) / ("ping", data)."""
        while True:
            m = self.recv(timeout)
            if not (isinstance(m, str) and m.startswith("{") and "event" in json.loads(m)):
                return m

    def close(self):
        if self.ws:
            self.opened.__exit__(None, None, None)
        else:
            self.conn.close()


def wait_for(condition, timeout=10, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture
def redis(tmp_path):
    r = Redis(str(tmp_path)).start()
    yield r
    r.stop()


@pytest.fixture
def nodes(tmp_path):
    """Start nodes of other faces: nodes(RustNode, redis_url, namespace),
    nodes(PythonNode, redis_url); all stopped at the end."""
    started = []

    def start(kind, *args):
        started.append(kind(str(tmp_path), *args))
        return started[-1]

    yield start
    for n in started:
        n.stop()


@pytest.fixture
def clients():
    """Open clients: clients(draft, port, path); all closed at the end."""
    opened = []

    def open_(draft, port, path):
        opened.append(Client(draft, port, path))
        return opened[-1]

    yield open_
    for c in opened:
        try:
            c.close()
        except OSError:
            pass
