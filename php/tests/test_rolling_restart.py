"""A rolling restart of PHP daemons on one port (php.ini
polysocket.reuse_port): the old daemon, given SIGTERM, closes its listening
socket and serves its clients until setDrainTimeout()'s time, then closes
them with 1001 and exits; clients that connect meanwhile are served by the
new daemon."""

import signal
import time
from contextlib import ExitStack

import pytest
from conftest import free_port, php_json
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

APPS = "php/tests/servers/apps.php"
DRAIN = 2.5
REUSE = ["polysocket.reuse_port=1"]


def test_sigterm_drains_then_closes_with_1001(php_server):
    with ExitStack() as stack:
        rolling_restart(php_server, stack)


def rolling_restart(php_server, stack):
    port = free_port()
    old = php_server(APPS, "--drain-timeout", DRAIN, ini=REUSE, port=port)
    clients = [stack.enter_context(connect(old.url + "/echo", compression=None))
               for _ in range(20)]
    new = php_server(APPS, ini=REUSE, port=port)
    deadline = time.monotonic() + 15
    while "Server running on" not in new.output():
        assert time.monotonic() < deadline, new.output()
        time.sleep(0.02)

    t0 = time.monotonic()
    old.proc.send_signal(signal.SIGTERM)
    newcomers = 0
    while time.monotonic() < t0 + DRAIN - 0.5:
        for i, c in enumerate(clients):
            c.send("old %d" % i)
            assert c.recv(timeout=5) == "old %d" % i
        with connect(new.url + "/echo") as ws:
            ws.send("new")
            assert ws.recv(timeout=5) == "new"
        newcomers += 1
        time.sleep(0.05)
    assert newcomers >= 5

    for c in clients:
        with pytest.raises(ConnectionClosed) as closed:
            c.recv(timeout=10)
        assert closed.value.rcvd.code == 1001
    assert time.monotonic() - t0 >= DRAIN - 0.1
    assert old.proc.wait(10) == 0
    with connect(new.url + "/echo") as ws:
        ws.send("after")
        assert ws.recv(timeout=5) == "after"


def test_set_drain_timeout_takes_a_number_of_seconds(tmp_path):
    assert php_json(tmp_path, """
        echo json_encode([$s->getDrainTimeout(), $s->setDrainTimeout('3'), $s->setDrainTimeout(-1),
            $s->setDrainTimeout(NAN), $s->getDrainTimeout(), $s->setDrainTimeout(2.5),
            $s->getDrainTimeout(), $s->setDrainTimeout(7), $s->getDrainTimeout()]), "\\n";
    """) == [0, False, False, False, 0, True, 2.5, True, 7]
