"""Behind real proxies (Debian's HAProxy and nginx, started here on free
ports with configuration files in a temp dir, stopped by PID): the PROXY
protocol v1 and v2 (HAProxy ``send-proxy`` / ``send-proxy-v2``, TCP mode)
and ``X-Forwarded-For`` (nginx) give the handler each client's real
address (``request.remote_ip``), and the per-IP limit counts clients bound
to different 127.0.0.x addresses apart. The same headers from an address
that is not a trusted proxy are ignored or refused; a malformed PROXY
header is refused while the other connections keep working."""

import base64
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

import polysocket
from conftest import ServerThread, free_port
from polysocket import WebSocketHandler

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(HAPROXY) and os.path.exists(NGINX)),
    reason="haproxy and nginx not installed (scripts/test-python.sh installs them)")


class WhoAmI(WebSocketHandler):
    """Tells each client the address the server sees, then echoes."""

    def check_origin(self, origin):
        return True

    def open(self):
        self.write_message(self.request.remote_ip)

    def on_message(self, message):
        self.write_message(message)


class Client:
    """A raw RFC 6455 client bound to a source address ``src``."""

    def __init__(self, port, src, prefix=b"", headers=""):
        self.sock = socket.socket()
        self.sock.settimeout(5)
        self.sock.bind((src, 0))
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(prefix + (
            "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" % (key, headers)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            try:
                chunk = self.sock.recv(4096)
            except (ConnectionResetError, socket.timeout):
                chunk = b""
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        line = head.split(b"\r\n", 1)[0].split()
        self.status = int(line[1]) if len(line) > 1 else None

    def recv_text(self):
        while len(self.buf) < 2 or len(self.buf) < 2 + (self.buf[1] & 0x7F):
            chunk = self.sock.recv(4096)
            assert chunk, "connection closed"
            self.buf += chunk
        n = self.buf[1] & 0x7F
        assert self.buf[0] == 0x81 and n < 126
        text, self.buf = self.buf[2:2 + n].decode(), self.buf[2 + n:]
        return text

    def echo(self, text):
        data = text.encode()
        mask = os.urandom(4)
        self.sock.sendall(bytes([0x81, 0x80 | len(data)]) + mask
                          + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        return self.recv_text()

    def close(self):
        self.sock.close()


def wait_listening(port, proc):
    deadline = time.time() + 10
    while time.time() < deadline:
        assert proc.poll() is None, "the proxy exited with %s" % proc.returncode
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nothing listens on %d" % port)


@pytest.fixture
def start_proxy(tmp_path):
    """start_proxy(argv, port): run a proxy, wait for its port; stopped by PID."""
    procs = []

    def start(argv, port):
        log = open(tmp_path / ("proxy%d.log" % len(procs)), "wb")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        wait_listening(port, p)
        return p

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def expect_clients_apart(port, prefix_src="127.0.0."):
    """Two clients at once; a second connection of the first is over the
    per-IP limit (1); each sees its own address; returns the open ones."""
    a = Client(port, prefix_src + "2")
    assert a.status == 101 and a.recv_text() == prefix_src + "2"
    b = Client(port, prefix_src + "3")
    assert b.status == 101 and b.recv_text() == prefix_src + "3"
    again = Client(port, prefix_src + "2")
    assert again.status == 429, "the per-IP limit counts the real client"
    again.close()
    return a, b


@pytest.fixture
def pp_server():
    s = ServerThread([(r"/", WhoAmI)], "inline", trusted_proxies=["127.0.0.1"],
                     proxy_protocol=True, max_connections_per_ip=1).start()
    yield s
    s.stop()


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_haproxy_proxy_protocol(pp_server, start_proxy, tmp_path, send_proxy):
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        "global\n    maxconn 100\n"
        "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n"
        "    timeout server 30s\n"
        "listen ws\n    bind 127.0.0.1:%d\n    server polysocket 127.0.0.1:%d %s\n"
        % (port, pp_server.port, send_proxy))
    start_proxy([HAPROXY, "-db", "-f", str(cfg)], port)
    a, b = expect_clients_apart(port)
    # Straight to the server from an address that is not a trusted proxy:
    # a valid PROXY header (naming anyone) is refused.
    header = b"PROXY TCP4 203.0.113.9 127.0.0.1 1234 80\r\n"
    assert Client(pp_server.port, "127.0.0.5", header).status is None
    # From the trusted address, a malformed header or none: refused...
    assert Client(pp_server.port, "127.0.0.1", b"PROXY TCP4 nonsense\r\n").status is None
    assert Client(pp_server.port, "127.0.0.1").status is None
    # ...while the connections through the proxy keep working.
    assert a.echo("still here") == "still here" and b.echo("me too") == "me too"
    c = Client(port, "127.0.0.4")
    assert c.status == 101 and c.recv_text() == "127.0.0.4"
    for conn in (a, b, c):
        conn.close()


def test_nginx_x_forwarded_for(start_proxy, tmp_path):
    s = ServerThread([(r"/", WhoAmI)], "inline", trusted_proxies=["127.0.0.1"],
                     max_connections_per_ip=1).start()
    try:
        port = free_port()
        cfg = tmp_path / "nginx.conf"
        cfg.write_text("""
daemon off;
master_process off;
worker_processes 1;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/nginx-error.log;
events { worker_connections 128; }
http {
    access_log off;
    client_body_temp_path %(tmp)s; proxy_temp_path %(tmp)s; fastcgi_temp_path %(tmp)s;
    uwsgi_temp_path %(tmp)s; scgi_temp_path %(tmp)s;
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            proxy_pass http://127.0.0.1:%(backend)d;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }
    }
}
""" % {"tmp": tmp_path, "port": port, "backend": s.port})
        start_proxy([NGINX, "-p", str(tmp_path), "-e", str(tmp_path / "nginx-error.log"),
                     "-c", str(cfg)], port)
        a, b = expect_clients_apart(port)
        # A client's own X-Forwarded-For is kept by nginx, left of the
        # address nginx saw: not believed.
        spoof = Client(port, "127.0.0.4", headers="X-Forwarded-For: 203.0.113.9\r\n")
        assert spoof.status == 101 and spoof.recv_text() == "127.0.0.4"
        # Straight from an untrusted address, the header is ignored.
        direct = Client(s.port, "127.0.0.5", headers="X-Forwarded-For: 203.0.113.9\r\n")
        assert direct.status == 101 and direct.recv_text() == "127.0.0.5"
        assert a.echo("ok") == "ok" and b.echo("ok") == "ok"
        for conn in (a, b, spoof, direct):
            conn.close()
    finally:
        s.stop()


def test_bad_trusted_proxy_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="10.0.0.0/33"):
        polysocket.Server([(r"/", WhoAmI)], trusted_proxies=["127.0.0.1", "10.0.0.0/33"])
    with pytest.raises(ValueError, match="trusted_proxies"):
        polysocket.Server([(r"/", WhoAmI)], proxy_protocol=True)
    cli = subprocess.run([sys.executable, "-m", "polysocket", "echo", "--port", "0",
                          "--trusted-proxy", "127.0.0.1", "--trusted-proxy", "proxy.example"],
                         capture_output=True, text=True, timeout=30)
    assert cli.returncode == 2 and "proxy.example" in cli.stderr, cli.stderr
