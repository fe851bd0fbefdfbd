"""Metrics on the PHP daemon: setMetrics()/setMetricsPort() serve
``GET /metrics`` (promtool accepts it) and getStats() counts what the
clients did; the setters refuse what is not a bool / port."""

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from conftest import free_port, php_json, raw_open, raw_status
from rawws import OP_TEXT
from websockets.sync.client import connect

APPS = "php/tests/servers/apps.php"


def scrape(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return r.read().decode()


def samples(text):
    return {k: int(v) for k, v in (line.rsplit(" ", 1) for line in text.splitlines()
                                   if line and not line.startswith("#"))}


def test_get_stats_and_the_metrics_endpoints(php_server):
    metrics_port = free_port()
    server = php_server(APPS, "--metrics", "--metrics-port", metrics_port, "--per-ip", 3)
    with connect(server.url + "/control", compression=None) as control:
        with connect(server.url + "/echo") as modern, raw_open(server.port, version=8) as hybi:
            for m in ("one", "two" * 50):
                modern.send(m)
                assert modern.recv(timeout=10) == m
            hybi.send_frame(OP_TEXT, b"hybi-08")
            assert hybi.read_message() == (OP_TEXT, b"hybi-08")
            assert raw_status(server.port).status == 429
            control.send("stats")
            stats = json.loads(control.recv(timeout=10))
        assert stats["connections"] == 3
        assert stats["by_draft"] == {"rfc6455": 2, "hybi-08": 1}
        assert stats["by_extension"] == {"permessage-deflate": 1, "none": 2}
        assert stats["by_http_version"] == {"1.1": 3}
        assert stats["handshakes_accepted"] == 3
        assert stats["handshakes_refused"] == {"429": 1}
        assert stats["limits"]["max_connections_per_ip"] == 1
        # The echoed messages; "stats" itself is counted once its callback
        # returned (a connection's tally is taken between its wake-ups).
        assert stats["messages_in"] == 3 and stats["messages_out"] == 3
        assert stats["bytes_in"] == stats["bytes_out"] == 3 + 150 + 7
        assert stats["closes"] == [] and stats["cluster"] is None

        for port in (server.port, metrics_port):
            # The closes are counted once the server's tasks saw them.
            deadline = time.monotonic() + 10
            while True:
                got = samples(scrape(port))
                if sum(v for k, v in got.items() if k.startswith("polysocket_closes_total")) == 2 \
                        or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            assert got['polysocket_closes_total{code="1000"}'] == 1
            assert got['polysocket_closes_total{code="1006"}'] == 1
            assert got["polysocket_messages_received_total"] == 4  # "stats" too
            assert got['polysocket_connections{draft="rfc6455"}'] == 1
            assert got['polysocket_handshakes_refused_total{status="429"}'] == 1
        with pytest.raises(urllib.error.HTTPError) as other:
            scrape(metrics_port, "/")
        assert other.value.code == 404

    # One log line per refused handshake, with the client's address.
    refused = [line for line in server.output().splitlines() if "handshake answered" in line]
    assert len(refused) == 1, server.output()
    assert " [info] 127.0.0.1:" in refused[0], refused
    assert refused[0].endswith("handshake answered 429: refused: too many connections from this address"), refused

    promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not promtool:
        pytest.skip("no promtool (scripts/test-php.sh unpacks Debian's)")
    r = subprocess.run([promtool, "check", "metrics"], input=scrape(metrics_port),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_setters_refuse_what_they_cannot_use(tmp_path):
    got = php_json(tmp_path, """
        $r = [$s->setMetrics('yes'), $s->getMetrics(), $s->setMetrics(true), $s->getMetrics(),
              $s->setMetricsPort(70000), $s->setMetricsPort('80'), $s->getMetricsPort(),
              $s->setMetricsPort(9100), $s->getMetricsPort(), $s->setMetricsPort(null),
              $s->getMetricsPort()];
        try { $s->getStats(); $r[] = 'no exception'; }
        catch (\\Exception $e) { $r[] = $e->getMessage(); }
        echo json_encode($r), "\\n";
    """)
    assert got[:11] == [False, False, True, True, False, False, None, True, 9100, True, None]
    assert "not running" in got[11]
