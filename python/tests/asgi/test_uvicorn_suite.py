"""uvicorn's own WebSocket test module, run against polysocket.asgi.

The tests of uvicorn's sdist (the version installed, pinned in
requirements-asgi.txt) are copied to a temporary folder with two changes:
polysocket's class joins the ``ws_protocol_cls`` fixture's parameters, and
the two ``isinstance`` checks that narrow the server's protocol to uvicorn's
own classes (for the type checker, before reading ``ping_timer`` and
``ping_sent_at``) accept it too. The module then runs under pytest in a
subprocess with uvicorn's own configuration (warnings are errors) for every
HTTP implementation (h11, httptools, zttp). Any failure, error or skip of a
polysocket test fails this test.
"""

import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import uvicorn

REPO = Path(__file__).resolve().parents[3]
CACHE = REPO / "target" / "asgi"

# Tests that cannot apply to a replacement protocol, with the reason
# (docs/ASGI.md lists them too).
EXCLUDED: dict[str, str] = {}

FIXTURE = """id="websockets-sansio"
        ),
"""
OURS = """        pytest.param("polysocket.asgi:WebSocketProtocol", id="polysocket"),
"""
NARROWING = "(_WSProtocol, WebSocketsSansIOProtocol))"
NARROWED = "(_WSProtocol, WebSocketsSansIOProtocol, PolysocketProtocol))"
IMPORT = "\nfrom polysocket.asgi import WebSocketProtocol as PolysocketProtocol\n"


def sdist() -> Path:
    """uvicorn's sdist for the installed version (downloaded once)."""
    name = "uvicorn-%s" % uvicorn.__version__
    tarball = CACHE / (name + ".tar.gz")
    if not tarball.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--no-binary", ":all:", "-d", str(CACHE),
                        "uvicorn==%s" % uvicorn.__version__], check=True)
    source = CACHE / name
    if not source.exists():
        with tarfile.open(tarball) as tar:
            tar.extractall(CACHE, filter="data")
    return source


def patched(tmp: Path) -> Path:
    source = sdist()
    shutil.copytree(source / "tests", tmp / "tests")
    shutil.copy(source / "pyproject.toml", tmp / "pyproject.toml")
    conftest = tmp / "tests" / "conftest.py"
    text = conftest.read_text()
    assert text.count(FIXTURE) == 1, "uvicorn's ws_protocol_cls fixture changed"
    conftest.write_text(text.replace(FIXTURE, FIXTURE + OURS))
    module = tmp / "tests" / "protocols" / "test_websocket.py"
    text = module.read_text()
    assert text.count(NARROWING) == 2, "uvicorn's protocol checks changed"
    first_import = text.index("\nimport ")
    text = text[:first_import] + IMPORT + text[first_import:]
    module.write_text(text.replace(NARROWING, NARROWED))
    return module


# The module's 219 tests take about 40 s on two idle cores; the run's own
# timeout (600 s) bounds it, not pytest.ini's 60 s per test.
@pytest.mark.timeout(660)
def test_uvicorn_websocket_suite(tmp_path):
    module = patched(tmp_path)
    report = tmp_path / "report.xml"
    deselect = ["--deselect=%s" % test for test in EXCLUDED]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         # uvicorn's options without its -n 8 (pytest-xdist, not installed).
         "-o", "addopts=-rxXs --strict-config --strict-markers",
         "-k", "polysocket", "--junitxml=%s" % report, str(module), *deselect],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr
    print(summary)
    cases = ET.parse(report).getroot().iter("testcase")
    outcomes = {"passed": [], "failed": [], "skipped": []}
    for case in cases:
        name = "%s[%s" % (case.get("name").split("[")[0], case.get("name").split("[", 1)[-1])
        if case.find("failure") is not None or case.find("error") is not None:
            outcomes["failed"].append(name)
        elif case.find("skipped") is not None:
            outcomes["skipped"].append(name)
        else:
            outcomes["passed"].append(name)
    assert run.returncode == 0 and not outcomes["failed"], (
        "uvicorn's tests failed against polysocket.asgi: %s\n%s" % (outcomes["failed"], run.stdout[-6000:]))
    assert not outcomes["skipped"], "skipped: %s" % outcomes["skipped"]
    # 73 tests, each with h11, httptools and zttp.
    assert len(outcomes["passed"]) >= 200, summary
