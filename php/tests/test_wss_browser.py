"""wss:// with a self-signed certificate (Python websockets over TLS), and
headless Chromium against the PHP echo daemon (the interop suite's page:
permessage-deflate, text, binary, 1 MiB, Blob, clean close)."""

import json
import os
import ssl
import subprocess

import pytest
from test_chromium import PageServer, RESULT_TIMEOUT, chromium_path, run_chromium
from websockets.sync.client import connect


@pytest.fixture
def certificate(tmp_path):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def test_wss(php_server, certificate):
    cert, key = certificate
    server = php_server("php/tests/servers/apps.php", "--cert", cert, "--key", key)
    assert "Server running on wss://127.0.0.1:%d" % server.port in server.output()
    context = ssl.create_default_context(cafile=cert)
    url = "wss://127.0.0.1:%d" % server.port
    with connect(url + "/echo", ssl=context, max_size=None) as ws:
        ws.send("secure ✓")
        assert ws.recv() == "secure ✓"
        data = os.urandom(1 << 20)
        ws.send(data)
        assert ws.recv() == data
    with connect(url + "/info", ssl=context) as ws:
        ws.send("?")
        assert json.loads(ws.recv())["secure"] is True


def test_wss_echo_example(php_server, certificate):
    cert, key = certificate
    server = php_server("examples/php/echo.php", "--cert", cert, "--key", key)
    context = ssl.create_default_context(cafile=cert)
    with connect("wss://127.0.0.1:%d/" % server.port, ssl=context) as ws:
        ws.send(b"\x00bin")
        assert ws.recv() == b"\x00bin"


def test_chromium(php_server):
    if os.environ.get("POLYSOCKET_SKIP_BROWSER") == "1":
        pytest.skip("POLYSOCKET_SKIP_BROWSER=1")
    chromium = chromium_path()
    assert chromium, "Chromium not found (apt-get install chromium)"
    server = php_server("examples/php/echo.php")
    with PageServer(server.url + "/echo") as page:
        exited, log = run_chromium(chromium, page.url, page.got_result)
        r = page.result
    assert r is not None, "no result within %ds; Chromium:\n%s" % (RESULT_TIMEOUT, log)
    assert "error" not in r, r
    assert "HeadlessChrome" in r["userAgent"]
    assert r["extensions"].split(";")[0].strip() == "permessage-deflate", r["extensions"]
    assert [s["name"] for s in r["steps"]] == ["text", "binary", "1MiB-binary", "1MiB-text", "blob"]
    assert all(s["equal"] for s in r["steps"]), r
    assert (r["close"]["code"], r["close"]["wasClean"]) == (1000, True), r["close"]
