"""Headless browsers for the interop tests: their pages, finding them,
Chromium's flags, and running one on a URL until the test has its result
(tests/test_chromium.py, tests/test_http2_browsers.py, and through
test_chromium.py the PHP and Python faces' browser tests)."""

import os
import shutil
import signal
import subprocess

BROWSER_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "browser")
SHARED_SCRIPT = '<script src="echo.js"></script>'


def browser_page(name):
    """tests/browser/`name` whole: tests/browser/echo.js inlined where the
    page loads it, so that a server of one file can serve it."""
    def read(filename):
        with open(os.path.join(BROWSER_DIR, filename), encoding="utf-8") as f:
            return f.read()

    page = read(name)
    assert SHARED_SCRIPT in page, "%s does not load echo.js" % name
    return page.replace(SHARED_SCRIPT, "<script>\n" + read("echo.js") + "</script>")


def executable(env_var, *candidates):
    """The first of $`env_var` and `candidates` (paths or names on PATH)
    that is an executable file, or None."""
    for candidate in (os.environ.get(env_var),) + candidates:
        path = candidate and (shutil.which(candidate) or candidate)
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def chromium_path():
    return executable("CHROMIUM", "/usr/bin/chromium", "chromium", "chromium-browser")


def chromium_argv(chromium, profile, url, *flags):
    """Headless Chromium on `url` with a fresh profile directory, nothing
    in the background, and `flags` (e.g. --ignore-certificate-errors)."""
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", *flags,
            "--user-data-dir=" + profile, url]


def stop_group(proc):
    """Stop a browser and the processes it forked (zygote, renderers: its
    own session)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(5)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_browser(argv, log_path, wait, env=None):
    """Start `argv` in its own session, its output in `log_path`; call
    `wait()` (which returns when the test has its result or gives up),
    then stop the browser. Returns (its exit status if it had exited
    already, else None; the tail of its output)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env=dict(os.environ, **(env or {})), start_new_session=True)
        try:
            wait()
            exited = proc.poll()
        finally:
            stop_group(proc)
    with open(log_path, "rb") as f:
        return exited, f.read()[-4000:].decode("utf-8", "replace")
