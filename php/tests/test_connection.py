"""The $client object: one object per client across callbacks, loose
comparison tells clients apart (php-websocket's array_search), what the
application can learn about the client, and the send() types."""

import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def test_identity_and_equality(apps):
    with connect(apps.url + "/same") as first, connect(apps.url + "/same") as second:
        first.send("?")
        a = json.loads(first.recv())
        second.send("?")
        b = json.loads(second.recv())
    assert a == {"sameObject": True, "equalsItself": True, "equalsFirst": True,
                 "identicalFirst": True, "index": 0, "count": 2}
    assert b == {"sameObject": True, "equalsItself": True, "equalsFirst": False,
                 "identicalFirst": False, "index": 1, "count": 2}


def test_what_the_application_knows(apps):
    with connect(apps.url + "/info?room=7", origin="http://example.com",
                 subprotocols=["info"]) as ws:
        ws.send("?")
        info = json.loads(ws.recv())
        local_port = ws.socket.getsockname()[1]
    # the port is a string, as php-websocket's (it split "ip:port")
    assert info["ip"] == "127.0.0.1" and info["port"] == str(local_port)
    assert len(info["id"]) == 32 and int(info["id"], 16) >= 0
    assert info["draft"] == "rfc6455"
    assert (info["path"], info["query"]) == ("/info", "room=7")
    assert info["origin"] == "http://example.com"
    assert info["host"] == "127.0.0.1:%d" % apps.port
    assert info["headerCount"] >= 6
    assert info["subprotocol"] == "info"
    assert info["extension"] == "permessage-deflate"
    assert info["secure"] is False
    assert info["app"] == "InfoApp"


def test_send_types_and_close(apps):
    with connect(apps.url + "/control") as ws:
        ws.send("types")
        # the ping is answered by the client library; then binary, then the
        # result of sending invalid UTF-8 as text (refused)
        assert ws.recv() == b"\xff\xfe"
        assert ws.recv() == "false"
        assert "a text message must be UTF-8" in apps.output()
        ws.send("close")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 4000


def test_demo_application(apps):
    with connect(apps.url + "/demo") as a, connect(apps.url + "/demo") as b:
        a.send(json.dumps({"action": "echo", "data": "hi all"}))
        for ws in (a, b):
            assert json.loads(ws.recv()) == {"action": "echo", "data": "hi all"}
        a.send("not json")  # ignored, like php-websocket
        a.send(json.dumps({"action": "echo", "data": "after"}))
        assert json.loads(a.recv())["data"] == "after"


def test_status_application(apps):
    with connect(apps.url + "/status") as status:
        info = json.loads(status.recv())
        assert info["action"] == "serverInfo"
        assert info["data"]["maxClients"] == 1000
        assert "maxRequetsPerMinute" in info["data"]  # sic, php-websocket's key
        # its own connection was announced after the serverInfo
        assert json.loads(status.recv())["action"] == "statusMsg"
        assert json.loads(status.recv())["action"] == "clientConnected"
        with connect(apps.url + "/echo") as ws:
            # the hooks get the port as a string, as php-websocket's did
            port = str(ws.socket.getsockname()[1])
            msgs = [json.loads(status.recv()) for _ in range(2)]
            assert msgs[0]["action"] == "statusMsg"
            assert msgs[0]["data"]["text"].endswith("Client connected: 127.0.0.1:" + port)
            assert msgs[1] == {"action": "clientConnected",
                               "data": {"ip": "127.0.0.1", "port": port, "clientCount": 2}}
            ws.send("x")
            ws.recv()
            assert json.loads(status.recv()) == {"action": "clientActivity", "data": port}
        msgs = [json.loads(status.recv()) for _ in range(2)]
        assert msgs[0]["data"]["text"].endswith("Client disconnected: 127.0.0.1:" + port)
        assert msgs[1] == {"action": "clientDisconnected",
                           "data": {"port": port, "clientCount": 1}}


def test_send_ping_and_unsolicited_pong_reach_the_wire(apps):
    """send($x, 'ping') and send($x, 'pong') put those control frames on the
    wire, in order with the data frames (seen by a raw client)."""
    from conftest import raw_open
    from rawws import OP_BINARY, OP_PING, OP_PONG, OP_TEXT

    c = raw_open(apps.port, path="/control")
    with c:
        c.send_frame(OP_TEXT, b"types")
        frames = [c.read_frame()[2:] for _ in range(4)]
    assert [(op, payload) for op, payload in frames] == [
        (OP_PING, b"ping payload"),
        (OP_PONG, b""),
        (OP_BINARY, b"\xff\xfe"),
        (OP_TEXT, b"false"),
    ]
