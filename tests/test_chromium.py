"""Headless Chromium (Debian's /usr/bin/chromium) against the echo server.

pytest serves tests/browser/page.html over HTTP on its own port of
127.0.0.1; the page's JavaScript exchanges messages with the echo server
and POSTs what happened to /result. The test fails if the page reports
nothing within the time limit, i.e. also when Chromium does not start or
cannot connect.

POLYSOCKET_SKIP_BROWSER=1 skips it (for machines without Chromium); the
default is to fail when Chromium is missing.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.join(HERE, "browser", "page.html")
RESULT_TIMEOUT = 60


def chromium_path():
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class PageServer:
    """Serves the test page (with the WebSocket URL filled in) and collects
    the result the page POSTs back."""

    def __init__(self, ws_url):
        page = open(PAGE, encoding="utf-8").read().replace("__WS_URL__", ws_url).encode()
        self.result = None
        self.got_result = threading.Event()
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                outer.requests.append(fmt % args)

            def do_GET(self):
                if self.path != "/":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(page)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(204)
                self.end_headers()
                if self.path == "/result" and not outer.got_result.is_set():
                    outer.result = json.loads(body)
                    outer.got_result.set()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def run_chromium(chromium, url, wait_for):
    """Run headless Chromium on `url` until `wait_for` (an Event) is set or
    the timeout expires; returns Chromium's stderr tail."""
    with tempfile.TemporaryDirectory(prefix="polysocket-chromium-") as profile:
        log_path = os.path.join(profile, "chromium.log")
        argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--user-data-dir=" + os.path.join(profile, "profile"), url]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)
            try:
                wait_for.wait(RESULT_TIMEOUT)
                exited = proc.poll()
            finally:
                # Chromium forks zygote and renderer processes: stop its group.
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.killpg(proc.pid, sig)
                    except ProcessLookupError:
                        break
                    try:
                        proc.wait(5)
                        break
                    except subprocess.TimeoutExpired:
                        continue
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        with open(log_path, "rb") as f:
            tail = f.read()[-4000:].decode("utf-8", "replace")
        return exited, tail


def test_chromium_echo_with_permessage_deflate(ws_url):
    if os.environ.get("POLYSOCKET_SKIP_BROWSER") == "1":
        pytest.skip("POLYSOCKET_SKIP_BROWSER=1")
    chromium = chromium_path()
    assert chromium, "Chromium not found (apt-get install chromium; scripts/test-interop.sh does)"
    with PageServer(ws_url) as page:
        exited, log = run_chromium(chromium, page.url, page.got_result)
        r = page.result
    assert r is not None, ("no result from the page within %ds (Chromium exit status %s, "
                           "page requests %r); Chromium's output:\n%s"
                           % (RESULT_TIMEOUT, exited, page.requests, log))
    assert "error" not in r, r
    assert r["opened"], r
    assert "HeadlessChrome" in r["userAgent"], r["userAgent"]
    assert r["extensions"].split(";")[0].strip() == "permessage-deflate", r["extensions"]
    names = [s["name"] for s in r["steps"]]
    assert names == ["text", "binary", "1MiB-binary", "1MiB-text", "blob"], r
    for s in r["steps"]:
        assert s["equal"], s
        assert s["binary"] == (s["name"] not in ("text", "1MiB-text")), s
    assert r["steps"][2]["recv_len"] == 1 << 20
    assert r["steps"][3]["recv_len"] >= 1 << 20
    assert (r["close"]["code"], r["close"]["wasClean"]) == (1000, True), r["close"]
