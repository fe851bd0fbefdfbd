"""The cluster from PHP (docs/CLUSTER.md, docs/PHP.md "Cluster"): two PHP
daemons (servers/cluster.php) and the Rust chat node on one real
redis-server, with clients of every draft family on every node."""

import json
import os
import time

import pytest
from cluster_peers import DRAFTS, PHP_NODE, Redis, RustNode, php_node, wait_for
from cluster_peers import clients, nodes, redis  # noqa: F401 (fixtures)
from conftest import free_port
from rawws import Conn



@pytest.fixture
def rust_node(nodes):
    return lambda redis_url, namespace: nodes(RustNode, redis_url, namespace)


def node(php_server, redis, *args):
    return php_node(php_server, redis.url, "t", *args)


def test_three_nodes_every_client_gets_every_message_once_in_order(
        php_server, redis, rust_node, clients):
    a, b = node(php_server, redis), node(php_server, redis)
    rust = rust_node(redis.url, "t")
    members = [clients(d, n.port, "chat?name=%s-%d" % (d, i))
               for i, n in enumerate((a, b, rust)) for d in DRAFTS]
    ctl_a, ctl_b = clients("rfc6455", a.port, "ctl"), clients("rfc6455", b.port, "ctl")
    # Every node knows the others (heartbeats) and counts every connection.
    total = len(members) + 2
    wait_for(lambda: len(ctl_a.call(cmd="nodes")) == 3, what="three nodes")
    wait_for(lambda: ctl_a.call(cmd="presence") == total and ctl_b.call(cmd="presence") == total,
             what="presence %d" % total)
    wait_for(lambda: ctl_b.call(cmd="presence", group="chat") == len(members), what="group presence")

    n = 60
    ctl_a.send(json.dumps({"cmd": "all", "n": n, "tag": "A"}))
    ctl_b.send(json.dumps({"cmd": "group", "n": n, "tag": "B"}))
    publisher = members[-1]  # an RFC 6455 client with deflate on the Rust node
    for i in range(n):
        publisher.send(str(i))
    publisher.send("end")
    expected = [str(i) for i in range(n)] + ["end"]
    for c in members:
        got = {"A": [], "B": [], "rfc6455-deflate-2": []}
        while any(not seq or seq[-1] != "end" for seq in got.values()):
            e = c.event()
            if e["event"] in ("all", "message") and e["name"] in got:
                got[e["name"]].append(e["text"])
        for tag, seq in got.items():
            assert seq == expected, (c.draft, tag, seq)
    # broadcastAll reached the control clients (not in the group) too; the
    # group did not.
    for ctl in (ctl_a, ctl_b):
        texts = []
        while texts[-1:] != ["end"]:
            e = ctl.event()
            assert e["event"] != "message", e
            texts.append(e["text"])
        assert texts == expected
    stats = ctl_a.call(cmd="stats")
    assert stats["connected"] and stats["published"] > 0 and stats["received"] > 0, stats
    assert stats["dropped"] == 0 and stats["malformed"] == 0, stats


def test_direct_commands_across_nodes(php_server, redis, rust_node, clients):
    a, b = node(php_server, redis), node(php_server, redis)
    rust = rust_node(redis.url, "t")
    ctl = clients("rfc6455", a.port, "ctl")
    on_b = clients("hixie-76", b.port, "x")
    on_b_id = on_b.call(cmd="id")
    wait_for(lambda: len(ctl.call(cmd="nodes")) == 3, what="three nodes")
    b_node = on_b_id >> 39
    assert b_node in ctl.call(cmd="nodes") and b_node != ctl.call(cmd="id") >> 39
    # The Rust node names a client without a name after its id.
    on_rust = clients("hybi-07", rust.port, "chat")
    rust_id = int(on_rust.event()["name"].split("-")[1])

    assert ctl.call(cmd="sendTo", id=on_b_id, text="to hixie") is True
    assert on_b.recv() == "to hixie"
    assert ctl.call(cmd="sendTo", id=rust_id, text="to rust") is True
    assert on_rust.recv() == "to rust"
    assert ctl.call(cmd="ping", id=rust_id) is True
    assert on_rust.recv() == ("ping", b"p")
    assert ctl.call(cmd="closeTo", id=rust_id, code=4000, reason="bye") is True
    assert on_rust.recv() == ("close", 4000, "bye")

    # Unknown: a node that is not live, and a gone id of a local node.
    unknown_node = max(ctl.call(cmd="nodes")) % (1 << 24) + 1
    while unknown_node in ctl.call(cmd="nodes"):
        unknown_node = unknown_node % (1 << 24) + 1
    assert ctl.call(cmd="sendTo", id=(unknown_node << 39) | 1, text="x") is False
    assert ctl.call(cmd="closeTo", id=(unknown_node << 39) | 1, code=1000, reason="") is False
    own = ctl.call(cmd="id")
    assert ctl.call(cmd="sendTo", id=own + 1000, text="x") is False
    assert ctl.call(cmd="sendTo", id=-1, text="x") is False


def test_presence_follows_clients_and_groups(php_server, redis, clients):
    a, b = node(php_server, redis), node(php_server, redis)
    ctl = clients("rfc6455", a.port, "ctl")
    wait_for(lambda: len(ctl.call(cmd="nodes")) == 2, what="two nodes")
    members = [clients(d, b.port, "chat") for d in DRAFTS]
    wait_for(lambda: ctl.call(cmd="presence", group="chat") == 5, what="5 in chat")
    assert ctl.call(cmd="presence") == 6
    assert members[-1].call(cmd="leave") is True
    members[0].close()
    wait_for(lambda: ctl.call(cmd="presence", group="chat") == 3, what="3 in chat")
    wait_for(lambda: ctl.call(cmd="presence") == 5, what="5 connections")
    assert ctl.call(cmd="presence", group="none") == 0


def test_garbage_on_the_channels_is_ignored(php_server, redis, clients):
    a, b = node(php_server, redis), node(php_server, redis)
    ctl, member = clients("rfc6455", a.port, "ctl"), clients("hixie-75", b.port, "chat")
    wait_for(lambda: len(ctl.call(cmd="nodes")) == 2, what="two nodes")
    b_node = member.call(cmd="id") >> 39
    for channel in ("all", "presence", "group:chat", "node:%d" % b_node):
        for junk in (b"", b"PS", b"PS\x01\x09abcd", b"PS\x01\x01\x00\x00\x00\x01\x07x",
                     os.urandom(64), b"hello"):
            redis.command(b"PUBLISH", b"polysocket:t:" + channel.encode(), junk)
    ctl.send(json.dumps({"cmd": "group", "n": 3, "tag": "A"}))
    assert [member.event()["text"] for _ in range(4)] == ["0", "1", "2", "end"]
    stats = wait_for(lambda: (lambda s: s if s["malformed"] >= 24 else None)(member.call(cmd="stats")),
                     what="malformed counted")
    assert stats["connected"], stats


def test_two_daemons_share_a_port_with_reuse_port(php_server, clients):
    port = free_port()
    php_server(PHP_NODE, "--reuse-port", port=port)
    php_server(PHP_NODE, "--reuse-port", port=port)
    pids = set()
    for _ in range(40):
        c = clients("rfc6455", port, "x")
        pids.add(c.call(cmd="pid"))
        c.close()
        if len(pids) == 2:
            break
    assert len(pids) == 2, pids


def test_redis_absent_at_start_then_joins(php_server, clients, tmp_path):
    redis = Redis(str(tmp_path))  # its port is free: nothing listens yet
    a, b = node(php_server, redis), node(php_server, redis)
    ctl, member = clients("rfc6455", a.port, "ctl"), clients("hixie-76", b.port, "chat")
    # Serving locally meanwhile.
    stats = ctl.call(cmd="stats")
    assert stats["connected"] is False and ctl.call(cmd="presence") == 1
    redis.start()
    try:
        wait_for(lambda: len(ctl.call(cmd="nodes")) == 2, what="the nodes to meet")
        assert ctl.call(cmd="stats")["connected"] is True
        ctl.send(json.dumps({"cmd": "all", "n": 2, "tag": "A"}))
        assert [json.loads(member.recv())["text"] for _ in range(3)] == ["0", "1", "end"]
    finally:
        redis.stop()


@pytest.mark.parametrize("url, namespace, cause", [
    ("http://127.0.0.1:6379", "t", "redis:// or rediss:// expected"),
    ("redis://127.0.0.1:notaport", "t", "cluster URL"),
    ("redis://127.0.0.1:6379", "bad namespace!", "cluster namespace"),
])
def test_a_bad_cluster_url_or_namespace_fails_clearly(php_server, url, namespace, cause):
    with pytest.raises(RuntimeError) as e:
        php_server(PHP_NODE, "--cluster", url, "--namespace", namespace)
    out = str(e.value)
    # Refused where it is set, naming the cause.
    assert "InvalidArgumentException" in out and "setCluster()" in out and cause in out, out


def test_the_php_chat_node_shares_a_room_with_the_rust_one(php_server, redis, rust_node, clients):
    """examples/php/chat_node.php: the page at /, the JSON events of the
    Rust and Python chat nodes, one room across the nodes."""
    php = php_server("examples/php/chat_node.php", "--cluster", redis.url, "--namespace", "room")
    rust = rust_node(redis.url, "room")
    with Conn(php.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        page = c.read_response()
        assert page.status == 200 and b"new WebSocket(" in page.body, page
    on_rust = clients("hixie-75", rust.port, "chat?name=ada")
    assert on_rust.event() == {"event": "join", "name": "ada"}
    time.sleep(0.5)  # the Rust node subscribes to the room's channel (milliseconds)
    on_php = clients("rfc6455-deflate", php.port, "chat?name=b%C3%A9a")
    assert on_php.event() == {"event": "join", "name": "béa"}
    assert on_rust.event() == {"event": "join", "name": "béa"}
    on_php.send("  hello from PHP  ")
    assert on_php.event() == {"event": "message", "name": "béa", "text": "hello from PHP"}
    assert on_rust.event() == {"event": "message", "name": "béa", "text": "hello from PHP"}
    on_rust.send("hi from Rust")
    for c in (on_php, on_rust):
        assert c.event() == {"event": "message", "name": "ada", "text": "hi from Rust"}
    on_php.close()
    assert on_rust.event() == {"event": "leave", "name": "béa"}
