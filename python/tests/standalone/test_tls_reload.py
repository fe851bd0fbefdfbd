"""Certificate rotation under load: ``python -m polysocket echo`` over TLS
with connections echoing all along; the PEM files replaced and SIGHUP sent;
``openssl s_client`` must see the new certificate's serial on new
handshakes, the old connections keep echoing without a break, and a broken
file changes nothing. Then ``Server.reload_tls()`` and SNI
(``ssl_certificates``) in process."""

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import threading
import time

import pytest
from websockets.sync.client import connect as sync_connect

from conftest import free_port
from polysocket import Server, WebSocketHandler

CONNECTIONS = 8


def make_cert(directory, name, serial, names=("localhost",)):
    """A self-signed P-256 certificate with ``serial`` written to
    ``<directory>/<name>.crt`` / ``.key``; returns the two paths."""
    cert, key = os.path.join(directory, name + ".crt"), os.path.join(directory, name + ".key")
    san = ",".join(["DNS:%s" % n for n in names] + ["IP:127.0.0.1"])
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-set_serial", str(serial), "-subj", "/CN=%s" % names[0],
                    "-addext", "subjectAltName=" + san, "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def served_serial(port, server_name="localhost"):
    """The serial (hex, as ``openssl x509 -serial`` prints it) of the
    certificate a new handshake is served."""
    hello = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                            "-servername", server_name],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    serial = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=hello.stdout,
                            capture_output=True, timeout=10)
    return serial.stdout.decode().strip().partition("=")[2]


def replace(src, dst):
    """Swap ``dst`` for a copy of ``src`` at once (what a renewal tool does)."""
    with open(src, "rb") as f:
        data = f.read()
    with open(dst + ".new", "wb") as f:
        f.write(data)
    os.replace(dst + ".new", dst)


class Echoer(threading.Thread):
    """One wss connection echoing messages back to back until stopped,
    recording the longest wait for an echo."""

    def __init__(self, stack, port, cafiles):
        super().__init__(daemon=True)
        self.ws = stack.enter_context(wss_connect(port, cafiles))
        self.echoes, self.longest, self.error = 0, 0.0, None
        self.running = True

    def run(self):
        try:
            while self.running:
                sent = time.monotonic()
                self.ws.send("message %d" % self.echoes)
                assert self.ws.recv(timeout=5) == "message %d" % self.echoes
                self.longest = max(self.longest, time.monotonic() - sent)
                self.echoes += 1
        except Exception as e:  # reported by the test
            self.error = e

    def stop(self):
        self.running = False
        self.join(10)


def wss_connect(port, cafiles):
    ctx = ssl.create_default_context()
    for cafile in cafiles:
        ctx.load_verify_locations(cafile)
    return sync_connect("wss://localhost:%d/" % port, ssl=ctx, open_timeout=10)


def wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_certificate_rotation_under_load(tmp_path):
    d = str(tmp_path)
    old_cert, old_key = make_cert(d, "old", 0x1001)
    new_cert, new_key = make_cert(d, "new", 0x2002)
    cert, key = os.path.join(d, "live.crt"), os.path.join(d, "live.key")
    replace(old_cert, cert)
    replace(old_key, key)
    port = free_port()
    log = open(os.path.join(d, "server.log"), "w+")
    proc = subprocess.Popen([sys.executable, "-m", "polysocket", "echo", "--port", str(port),
                             "--tls-cert", cert, "--tls-key", key],
                            stdout=log, stderr=subprocess.STDOUT)
    echoers = []
    stack = contextlib.ExitStack()
    try:
        assert wait_for(lambda: served_serial(port) == "1001", 10), "the server did not start"
        echoers = [Echoer(stack, port, [old_cert, new_cert]) for _ in range(CONNECTIONS)]
        for e in echoers:
            e.start()
        time.sleep(0.5)

        # Rotation: new files, SIGHUP; new handshakes get the new serial.
        replace(new_cert, cert)
        replace(new_key, key)
        before = [e.echoes for e in echoers]
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: served_serial(port) == "2002", 5)
        time.sleep(0.5)

        # A broken certificate: SIGHUP changes nothing, the error is logged.
        with open(cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "not reloaded" in open(log.name).read(), 5), open(log.name).read()
        assert served_serial(port) == "2002"
        # A key that is not the certificate's: the same.
        replace(new_cert, cert)
        replace(old_key, key)
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: open(log.name).read().count("not reloaded") >= 2, 5)
        assert served_serial(port) == "2002"
        assert proc.poll() is None, "SIGHUP must not end the server"

        # The connections opened before the rotation echoed all along.
        time.sleep(0.3)
        for e, n in zip(echoers, before):
            assert e.error is None, e.error
            assert e.is_alive() and e.echoes > n + 10, (n, e.echoes)
            assert e.longest < 2.0, "an echo waited %.2f s" % e.longest
        # New wss connections trust the new certificate only.
        with wss_connect(port, [new_cert]) as fresh:
            fresh.send("new")
            assert fresh.recv(timeout=5) == "new"
    finally:
        for e in echoers:
            e.stop()
        stack.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        log.close()


class Echo(WebSocketHandler):
    def on_message(self, message):
        self.write_message(message)


def test_reload_tls_raises_on_a_broken_file_and_keeps_the_old_certificate(serve, tmp_path):
    d = str(tmp_path)
    old_cert, old_key = make_cert(d, "old", 0x31)
    new_cert, new_key = make_cert(d, "new", 0x32)
    cert, key = os.path.join(d, "live.crt"), os.path.join(d, "live.key")
    replace(old_cert, cert)
    replace(old_key, key)
    s = serve([(r"/", Echo)], ssl_certfile=cert, ssl_keyfile=key)
    assert served_serial(s.port) == "31"
    os.remove(key)
    with pytest.raises(ValueError, match="live.key"):
        s.call(s.server.reload_tls)
    assert served_serial(s.port) == "31"
    replace(new_cert, cert)
    replace(new_key, key)
    s.call(s.server.reload_tls)
    assert served_serial(s.port) == "32"


def test_reload_tls_without_tls_is_a_runtime_error(serve):
    s = serve([(r"/", Echo)])
    with pytest.raises(RuntimeError, match="no reloadable certificates"):
        s.call(s.server.reload_tls)


def test_sni_chooses_the_certificate_by_server_name(serve, tmp_path):
    d = str(tmp_path)
    default = make_cert(d, "default", 0x41)
    a = make_cert(d, "a", 0x42, names=("a.test",))
    wild = make_cert(d, "wild", 0x43, names=("*.b.test",))
    s = serve([(r"/", Echo)], ssl_certfile=default[0], ssl_keyfile=default[1],
              ssl_certificates=[(["a.test"], *a), (["*.b.test"], *wild)])
    assert served_serial(s.port, "a.test") == "42"
    assert served_serial(s.port, "x.b.test") == "43"
    assert served_serial(s.port, "localhost") == "41"
    assert served_serial(s.port, "unknown.test") == "41"


def test_sni_needs_a_default_certificate(tmp_path):
    a = make_cert(str(tmp_path), "a", 0x51, names=("a.test",))
    with pytest.raises(ValueError, match="default certificate"):
        Server([(r"/", Echo)], ssl_certificates=[(["a.test"], *a)])
