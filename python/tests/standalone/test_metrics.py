"""Metrics: what the clients did — connections on three drafts with and
without compression, messages both ways, a message over the limit, a
handshake over the per-IP limit, closes with codes — is what
``Server.stats()`` reports and what ``GET /metrics`` serves (on the
server's port and on ``metrics_port``), in a format ``promtool check
metrics`` accepts."""

import logging
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import websockets
from websockets.sync.client import connect as sync_connect

import rawws
from polysocket import WebSocketHandler

LIMIT = 1000


class Echo(WebSocketHandler):
    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


def wait_for(stats, ready, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        s = stats()
        if ready(s) or time.monotonic() > deadline:
            return s
        time.sleep(0.01)


def scrape(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def samples(text):
    """{'name{labels}': value} from Prometheus' text format."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = int(value)
    return out


def test_stats_and_metrics_count_what_the_clients_did(serve):
    s = serve([(r"/.*", Echo)], metrics=True, metrics_port=0, max_message_size=LIMIT,
              max_connections_per_ip=3)
    stats = s.server.stats
    assert stats()["connections"] == 0 and stats()["closes"] == {}

    # Over the size limit (random bytes: deflate cannot shrink them): 1009.
    with sync_connect(s.url()) as ws:
        ws.send(os.urandom(LIMIT + 1))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1009

    sent = [b"one", b"two" * 100, b""]
    with sync_connect(s.url()) as modern, rawws.open_conn(s.port, version=8) as hybi, \
            rawws.Conn(s.port) as hixie:
        for m in sent:
            modern.send(m)
            assert modern.recv(timeout=10) == m
        hybi.send_frame(rawws.OP_TEXT, b"hybi-08")
        assert hybi.read_message() == (rawws.OP_TEXT, b"hybi-08")
        hixie.send(b"GET /old HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
                   b"Host: example.com\r\nOrigin: http://example.com\r\n\r\n")
        assert hixie.read_response().status == 101
        hixie.send(b"\x00hixie-75\xff")
        assert hixie.read_exact(10) == b"\x00hixie-75\xff"
        # A fourth connection from this address: 429.
        with rawws.Conn(s.port) as over:
            assert over.read_response().status == 429

        now = stats()
        assert now["connections"] == 3
        assert now["by_draft"] == {"rfc6455": 1, "hybi-08": 1, "hixie-75": 1}
        assert now["by_extension"] == {"permessage-deflate": 1, "none": 2}
        assert now["by_http_version"] == {"1.1": 3}
        assert now["handshakes_accepted"] == 4
        assert now["handshakes_refused"] == {429: 1}
        assert now["limits"]["max_connections_per_ip"] == 1
        assert now["limits"]["message_size"] == 1

        hybi.send_frame(rawws.OP_CLOSE, rawws.close_payload(4002))
        assert hybi.read_close()[0] == 4002

    payload = sum(len(m) for m in sent) + len(b"hybi-08") + len(b"hixie-75")
    end = wait_for(stats, lambda x: x["connections"] == 0 and sum(x["closes"].values()) == 4)
    assert end["closes"] == {1009: 1, 4002: 1, 1000: 1, 1005: 1}, end["closes"]
    assert (end["messages_in"], end["bytes_in"]) == (5, payload)
    assert (end["messages_out"], end["bytes_out"]) == (5, payload)
    assert end["cluster"] is None

    # The same in Prometheus' format, on both ports.
    metrics_host, metrics_port = s.server.metrics_address
    assert metrics_host == "127.0.0.1" and metrics_port != s.port
    for port in (s.port, metrics_port):
        text = scrape(port)
        got = samples(text)
        assert got["polysocket_handshakes_accepted_total"] == 4
        assert got['polysocket_handshakes_refused_total{status="429"}'] == 1
        assert got["polysocket_messages_received_total"] == 5
        assert got["polysocket_sent_bytes_total"] == payload
        assert got['polysocket_closes_total{code="4002"}'] == 1
        assert got['polysocket_limit_hits_total{limit="message_size"}'] == 1
        assert got['polysocket_connections{draft="hixie-75"}'] == 0
    with pytest.raises(urllib.error.HTTPError) as other:
        scrape(metrics_port, "/")
    assert other.value.code == 404

    promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not promtool:
        pytest.skip("no promtool (scripts/test-python.sh unpacks Debian's)")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_metrics_are_off_unless_asked_for(serve):
    s = serve([(r"/.*", Echo)])
    assert s.server.metrics_address is None
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape(s.port)
    assert refused.value.code == 400


@pytest.mark.parametrize("port", [-1, 65536])
def test_a_bad_metrics_port_is_a_value_error(port):
    import polysocket
    with pytest.raises(ValueError, match="metrics_port"):
        polysocket.Server([(r"/", Echo)], metrics_port=port)


def test_each_refused_handshake_is_logged_with_the_real_client_address(serve, caplog):
    """One INFO line on ``polysocket.access`` per refusal: the client's
    address (from a trusted proxy's header), the status, the reason."""
    s = serve([(r"/ws", Echo)], trusted_proxies=["127.0.0.1"])
    with caplog.at_level(logging.INFO, logger="polysocket.access"):
        with rawws.Conn(s.port) as c:
            c.send(rawws.upgrade_request(13, path="/nowhere",
                                         extra=("X-Forwarded-For: 203.0.113.9",)))
            assert c.read_response().status == 404
        with rawws.Conn(s.port) as c:
            c.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.7\r\n\r\n")
            assert c.read_response().status in (400, 426)
        deadline = time.monotonic() + 10
        while len(caplog.records) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records if r.name == "polysocket.access"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("203.0.113.9:") and "handshake answered 404: " in lines[0], lines
    assert lines[1].startswith("198.51.100.7:") and "handshake answered 4" in lines[1], lines
    assert all(r.levelname == "INFO" for r in caplog.records)
