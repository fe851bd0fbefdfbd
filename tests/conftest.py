"""Cross-language interop tests of polysocket against independent peers.

One echo server (POLYSOCKET_ECHO_CMD, see harness/echo_server.py) runs for
the whole session on a free port of 127.0.0.1; every test talks to it over
real sockets. The session fails if the server dies during the run.
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "harness"))

from echo_server import EchoServer, ServerError  # noqa: E402

# The scale test holds 10,000 connections: raise the descriptor limit
# before the echo server starts, so that it inherits the limit too.
try:
    import resource

    _soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    _want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (_want, max(_hard, _want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))
except ImportError:
    pass


@pytest.fixture(scope="session")
def echo_server():
    server = EchoServer()
    try:
        server.start()
    except ServerError as e:
        pytest.exit("echo server: %s" % e, returncode=3)
    yield server
    died = server.stop()
    if died is not None:
        pytest.fail("the echo server died during the session (status %s); log:\n%s"
                    % (died, server.log_tail()), pytrace=False)


@pytest.fixture(scope="session")
def port(echo_server):
    return echo_server.port


@pytest.fixture(scope="session")
def ws_url(echo_server):
    return echo_server.url + "/echo"


@pytest.fixture(autouse=True)
def _server_alive_after_each_test(request):
    """A test that crashes the server fails itself, not the next one."""
    yield
    if "echo_server" in request.fixturenames:
        server = request.getfixturevalue("echo_server")
        assert server.alive(), "the echo server died; log:\n" + server.log_tail()
