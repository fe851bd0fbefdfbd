"""Headless Chromium (Debian's /usr/bin/chromium) against the echo server.

pytest serves tests/browser/page.html (with echo.js) over HTTP on its own port of
127.0.0.1; the page's JavaScript exchanges messages with the echo server
and POSTs what happened to /result. The test fails if the page reports
nothing within the time limit, i.e. also when Chromium does not start or
cannot connect.

POLYSOCKET_SKIP_BROWSER=1 skips it (for machines without Chromium); the
default is to fail when Chromium is missing.
"""

import json
import os
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from browsers import browser_page, chromium_argv, chromium_path, run_browser

RESULT_TIMEOUT = 60


class PageServer:
    """Serves the test page (with the WebSocket URL filled in) and collects
    the result the page POSTs back."""

    def __init__(self, ws_url):
        page = browser_page("page.html").replace("__WS_URL__", ws_url).encode()
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
    the timeout expires; returns (its exit status or None, its output's tail)."""
    with tempfile.TemporaryDirectory(prefix="polysocket-chromium-") as profile:
        argv = chromium_argv(chromium, os.path.join(profile, "profile"), url)
        return run_browser(argv, os.path.join(profile, "chromium.log"),
                           lambda: wait_for.wait(RESULT_TIMEOUT))


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
