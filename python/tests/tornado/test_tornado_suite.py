"""Tornado's own websocket test module, run against polysocket.tornado.

The module shipped in the installed Tornado wheel is copied with its
``from tornado.websocket import (...)`` rewritten to import from
``polysocket.tornado``, so every handler AND every client in it run on
polysocket's engine, and run under pytest in a subprocess. Any failure,
error or unexpected skip fails this test.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import tornado
import tornado.test

# Tests that cannot apply to a replacement protocol, with the reason
# (docs/TORNADO.md lists them too). At most two may ever be listed.
EXCLUDED: dict[str, str] = {}

# Skips Tornado's suite itself makes on this machine (not ours to fix).
EXPECTED_SKIPS = {
    "abstract base class": "Tornado's @abstract_base_test mixins",
    "speedups": "tornado.speedups is optional",
}

IMPORT = "from tornado.websocket import ("


def generated_module(tmp: Path) -> Path:
    source = Path(tornado.test.__file__).with_name("websocket_test.py").read_text()
    assert source.count(IMPORT) == 1, "Tornado's test module changed its import"
    target = tmp / "tornado_websocket_test.py"
    # The module must really run on the drop-in (both ends).
    check = (
        "\n\nassert WebSocketHandler.__module__ == 'polysocket.tornado'"
        "\nassert websocket_connect.__module__ == 'polysocket.tornado'\n"
    )
    target.write_text(source.replace(IMPORT, "from polysocket.tornado import (") + check)
    return target


def test_tornado_websocket_suite(tmp_path: Path) -> None:
    module = generated_module(tmp_path)
    # Tornado's test cases fail on any unexpected log line; the access log
    # writes one INFO line per request.
    (tmp_path / "conftest.py").write_text(
        "import logging\nlogging.getLogger('tornado.access').setLevel(logging.CRITICAL)\n"
    )
    args = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(module)]
    for name in EXCLUDED:
        args += ["--deselect", f"{module}::{name}"]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    run = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    report = run.stdout + run.stderr
    print(report)
    assert run.returncode == 0, f"Tornado's websocket suite failed on polysocket.tornado:\n{report}"
    summary = report.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    assert "failed" not in summary and "error" not in summary, summary
    assert passed >= 60, summary
    for line in report.splitlines():
        if line.startswith("SKIPPED"):
            assert any(k in line for k in EXPECTED_SKIPS), f"unexpected skip: {line}"
    assert tornado.version.startswith("6."), tornado.version
