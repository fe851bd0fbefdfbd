"""Tests of the PHP extension over real sockets: PHP daemons (servers/*.php,
examples/php/*.php) started with `php -d extension=$POLYSOCKET_PHP_EXT`,
on free ports of 127.0.0.1, against independent clients.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "harness"))
sys.path.insert(0, os.path.join(REPO, "tests"))

EXT = os.environ.get("POLYSOCKET_PHP_EXT", os.path.join(REPO, "target", "release", "polysocket.so"))
PHP = os.environ.get("PHP", "php")


def php_argv(script, *args, ini=()):
    argv = [PHP, "-n", "-d", "extension=" + EXT, "-d", "date.timezone=UTC"]
    for setting in ini:
        argv += ["-d", setting]
    return argv + [script] + [str(a) for a in args]


def php_json(tmp_path, code):
    """Run `code` (PHP after `<?php`, with `$s` a new \\WebSocket\\Server on
    a free port) that ends by echoing JSON; the decoded value."""
    script = tmp_path / "snippet.php"
    script.write_text("<?php $s = new \\WebSocket\\Server('127.0.0.1', 0);\n" + code)
    r = subprocess.run(php_argv(str(script)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PhpServer:
    """One PHP daemon; its output is collected in a file."""

    def __init__(self, script, args=(), ini=(), tmp=None, cwd=REPO, port=None):
        self.port = port or free_port()
        self.cwd = cwd
        self.log_path = os.path.join(tmp, "server-%d-%d.log" % (self.port, id(self)))
        self.argv = php_argv(script, "--port", self.port, *args, ini=ini)
        self.proc = None

    @property
    def url(self):
        return "ws://127.0.0.1:%d" % self.port

    def start(self, timeout=15):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited (%s):\n%s" % (self.proc.returncode, self.output()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
                if "Server running" in self.output():
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not start:\n" + self.output())

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def signal(self, sig=signal.SIGTERM, timeout=15):
        """Send a signal and wait for the exit status."""
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def php_server(tmp_path):
    """Start a PHP daemon: php_server(script, *args, ini=[...], cwd=REPO, port=None)."""
    started = []

    def start(script, *args, ini=(), cwd=REPO, port=None):
        server = PhpServer(os.path.join(REPO, script), args, ini, str(tmp_path), cwd, port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def apps(php_server):
    """The test applications (servers/apps.php) without limits."""
    return php_server("php/tests/servers/apps.php")


def raw_open(port, version=13, path="/echo", extra=()):
    """A raw-socket client past an RFC 6455-style handshake to `path`."""
    import base64

    from rawws import Conn, accept_for, upgrade_request

    key = base64.b64encode(os.urandom(16)).decode()
    c = Conn(port)
    c.send(upgrade_request(version, key, path=path, extra=extra))
    resp = c.read_response()
    assert resp.status == 101, resp
    assert resp.header("Sec-WebSocket-Accept") == accept_for(key), resp
    c.response = resp
    return c


def raw_status(port, path="/echo", extra=(), version=13):
    """The HTTP status the server answers an upgrade request with."""
    from rawws import Conn, upgrade_request

    with Conn(port) as c:
        c.send(upgrade_request(version, "dGhlIHNhbXBsZSBub25jZQ==", path=path, extra=extra))
        return c.read_response()
