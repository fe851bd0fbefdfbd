"""Headless Chromium and Firefox ESR speak WebSocket over HTTP/2 (RFC 8441)
to the tokio echo example.

The example runs here with TLS (a CA and a certificate for 127.0.0.1 made
with openssl for the test), `--page` tests/browser/http2.html (echo.js
inlined) and `--log`.
Each browser loads https://127.0.0.1:PORT/?browser=NAME&run=TOKEN from the
example itself, over the HTTP/2 connection ALPN chose; the page's script
opens wss://127.0.0.1:PORT/echo?browser=NAME&run=TOKEN, echoes a text, a
binary, a 1 MiB binary and a 1 MiB text message, closes with 1000 and GETs
/result?browser=NAME&run=TOKEN&r=JSON. The example logs every open
(`open ID TARGET http2=BOOL extension=NAME`) and every plain request: the
test requires the page's result to be right AND the server's word that the
session was an HTTP/2 stream with permessage-deflate. A browser that fell
back to an HTTP/1.1 upgrade fails it (http2=false), as does no result within
the time limit.

Chromium accepts the certificate with --ignore-certificate-errors; Firefox
gets a fresh profile whose NSS database trusts the test CA (certutil, from
libnss3-tools). Both use their default settings for WebSockets over HTTP/2.

POLYSOCKET_SKIP_BROWSER=1 skips these tests; otherwise a missing browser or
certutil fails them (scripts/test-interop.sh installs chromium, firefox-esr
and libnss3-tools).
"""

import json
import os
import re
import subprocess
import tempfile
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from browsers import browser_page, chromium_argv, chromium_path, executable, run_browser
from echo_server import BUILD_CMD, DEFAULT_BINARY, REPO, EchoServer, cargo_env

LOG = os.path.join(REPO, "target", "interop", "http2-echo.log")
RESULT_TIMEOUT = 60
MIB = 1 << 20


def make_certificates(directory):
    """A CA, and a certificate for 127.0.0.1 and localhost signed by it."""
    def openssl(*args):
        subprocess.run(("openssl",) + args, cwd=directory, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=polysocket http2 test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", *ec, "-keyout", "key.pem", "-out", "cert.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(directory, "cert.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "cert.pem", "-days", "2", "-extfile", "cert.ext")
    return tuple(os.path.join(directory, n) for n in ("ca.pem", "cert.pem", "key.pem"))


@pytest.fixture(scope="module")
def tls_echo():
    """The echo example over TLS (ALPN h2 and http/1.1), serving the test
    page and logging opens and requests; yields (server, CA file)."""
    if os.environ.get("POLYSOCKET_SKIP_BROWSER") == "1":
        pytest.skip("POLYSOCKET_SKIP_BROWSER=1")
    if os.environ.get("POLYSOCKET_ECHO_CMD"):
        # The suite runs against another face's echo; this test serves its
        # own page from the Rust example, which the runtime step covers.
        pytest.skip("the Rust echo example's test (POLYSOCKET_ECHO_CMD set)")
    subprocess.run(BUILD_CMD, cwd=REPO, env=cargo_env(), check=True)
    with tempfile.TemporaryDirectory(prefix="polysocket-h2-certs-") as certs:
        ca, cert, key = make_certificates(certs)
        page = os.path.join(certs, "http2.html")
        with open(page, "w", encoding="utf-8") as f:
            f.write(browser_page("http2.html"))
        template = ("%s --host 127.0.0.1 --port {port} --tls-cert %s --tls-key %s "
                    "--page %s --log" % (DEFAULT_BINARY, cert, key, page))
        server = EchoServer(template=template, log_path=LOG).start()
        try:
            yield server, ca
        finally:
            died = server.stop()
            assert died is None, "the TLS echo server died (status %s); log:\n%s" % (
                died, server.log_tail())


def server_lines(tag):
    """The server's log lines that mention this run's tag."""
    with open(LOG, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    return [line for line in text.splitlines() if tag in line]


def chromium(profile, url, _ca):
    path = chromium_path()
    assert path, "Chromium not found (apt-get install chromium; scripts/test-interop.sh does)"
    return chromium_argv(path, profile, url, "--ignore-certificate-errors"), {}


FIREFOX_PREFS = """\
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("browser.aboutwelcome.enabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("app.update.enabled", false);
"""


def firefox(profile, url, ca):
    path = executable("FIREFOX", "/usr/bin/firefox-esr", "firefox-esr", "firefox")
    assert path, "Firefox not found (apt-get install firefox-esr; scripts/test-interop.sh does)"
    certutil = executable("CERTUTIL", "certutil")
    assert certutil, "certutil not found (apt-get install libnss3-tools; scripts/test-interop.sh does)"
    # A fresh profile whose NSS database trusts the test CA for TLS servers.
    db = "sql:" + profile
    subprocess.run([certutil, "-N", "-d", db, "--empty-password"], check=True)
    subprocess.run([certutil, "-A", "-d", db, "-n", "polysocket http2 test CA",
                    "-t", "C,,", "-i", ca], check=True)
    with open(os.path.join(profile, "user.js"), "w") as f:
        f.write(FIREFOX_PREFS)
    return ([path, "--headless", "--no-remote", "--new-instance", "--profile", profile, url],
            {"MOZ_CRASHREPORTER_DISABLE": "1"})


BROWSERS = {"chromium": (chromium, "HeadlessChrome/"), "firefox": (firefox, "Firefox/")}


def load_page(name, server, ca):
    """Load the page in `name` until it reports; returns (result or None,
    the server's lines for this run, the browser's exit status, its output)."""
    tag = "browser=%s&run=%s" % (name, uuid.uuid4().hex)
    url = "https://127.0.0.1:%d/?%s" % (server.port, tag)
    make_argv, _ = BROWSERS[name]
    with tempfile.TemporaryDirectory(prefix="polysocket-%s-" % name) as tmp:
        profile = os.path.join(tmp, "profile")
        os.mkdir(profile)
        argv, env = make_argv(profile, url, ca)
        result = None

        def wait():
            nonlocal result
            deadline = time.monotonic() + RESULT_TIMEOUT
            while result is None and time.monotonic() < deadline and server.alive():
                for line in server_lines(tag):
                    m = re.match(r"http GET (/result\?\S+)$", line)
                    if m:
                        result = json.loads(parse_qs(urlsplit(m.group(1)).query)["r"][0])
                time.sleep(0.2)

        exited, output = run_browser(argv, os.path.join(tmp, "browser.log"), wait, env)
    return result, server_lines(tag), exited, output, tag


@pytest.mark.parametrize("name", sorted(BROWSERS))
def test_browser_websocket_over_http2_with_permessage_deflate(tls_echo, name):
    server, ca = tls_echo
    r, lines, exited, output, tag = load_page(name, server, ca)
    assert r is not None, ("no result from %s within %ds (exit status %s); server lines %r; "
                           "server log tail:\n%s\nbrowser output:\n%s"
                           % (name, RESULT_TIMEOUT, exited, lines, server.log_tail(), output))
    assert "error" not in r, r
    assert r["opened"], r
    assert BROWSERS[name][1] in r["userAgent"], r["userAgent"]
    assert r["extensions"].split(";")[0].strip() == "permessage-deflate", r["extensions"]
    assert [s["name"] for s in r["steps"]] == ["text", "binary", "1MiB-binary", "1MiB-text"], r
    for s in r["steps"]:
        assert s["equal"] and s["sent_len"] == s["recv_len"], s
        assert s["binary"] == (s["name"] in ("binary", "1MiB-binary")), s
    assert r["steps"][2]["recv_len"] == MIB and r["steps"][3]["recv_len"] == MIB, r["steps"]
    assert (r["close"]["code"], r["close"]["wasClean"]) == (1000, True), r["close"]
    # The server's side: the page came from it, and the one WebSocket of this
    # run was opened as a stream of an HTTP/2 connection with permessage-deflate.
    assert "http GET /?%s" % tag in lines, lines
    opens = [line for line in lines if line.startswith("open ")]
    assert len(opens) == 1, lines
    assert re.fullmatch(r"open \d+ /echo\?%s http2=true extension=permessage-deflate"
                        % re.escape(tag), opens[0]), opens[0]
