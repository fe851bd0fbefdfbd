"""Three nodes of three faces on one real redis-server: the Rust chat node
(core/examples/chat_node.rs), a Python standalone node
(python/tests/standalone/cluster_node.py, in the venv scripts/test-python.sh
builds) and a PHP daemon (servers/cluster.php), 50 clients each, ten of
every draft family (hixie-75, hixie-76, hybi-07, RFC 6455 with and without
permessage-deflate). Namespace 'test', cluster_node.py's."""

import json
import time

from cluster_peers import DRAFTS, PythonNode, RustNode, php_node, wait_for
from cluster_peers import clients, nodes, redis  # noqa: F401 (fixtures)

PER_DRAFT = 10
N = 20
SENT = [str(i) for i in range(N)] + ["end"]
# (event, publisher): namespace broadcasts and group messages from a client
# of the PHP node (tags PA, PG) and of the Python node (Y), group messages
# from an RFC 6455 client of the Rust node (R).
STREAMS = [("all", "PA"), ("message", "PG"), ("all", "Y"), ("message", "Y"), ("message", "R")]


def open_clients(clients, node, publisher):
    """Ten clients of every draft on node's /chat (they join the group
    'chat'); the first RFC 6455 one, on the path `publisher`, publishes."""
    return {d: [clients(d, node.port, publisher if (d, i) == ("rfc6455", 0) else "chat")
                for i in range(PER_DRAFT)] for d in DRAFTS}


def read_until_end(c, got, streams):
    """Collect c's events into got[(event, name)] until each of `streams`
    has received "end"."""
    while any(got[s][-1:] != ["end"] for s in streams):
        try:
            e = c.event()
        except TimeoutError:
            raise AssertionError("a %s client got no end of %s: %s" % (
                c.draft, [s for s in streams if got[s][-1:] != ["end"]], got)) from None
        key = (e.get("event"), e.get("name"))
        if key in got:
            got[key].append(e["text"])


def test_rust_python_and_php_nodes_share_one_namespace(php_server, redis, nodes, clients):
    rust, py = nodes(RustNode, redis.url, "test"), nodes(PythonNode, redis.url)
    php = php_node(php_server, redis.url, "test")
    # The PHP node's publisher is not in the group (the only one): it must
    # get the namespace broadcasts and none of the group messages.
    on_php, on_py = open_clients(clients, php, "ctl"), open_clients(clients, py, "chat?name=Y")
    on_rust, ids = {}, {}  # ids: client -> connection id, where known
    for d in DRAFTS:
        on_rust[d] = []
        for i in range(PER_DRAFT):
            c = clients(d, rust.port, "chat?name=R" if (d, i) == ("rfc6455", 0) else "chat")
            # Its first event is its own join; unnamed, it is named after its id.
            name = c.event()["name"]
            if name.startswith("guest-"):
                ids[c] = int(name.split("-")[1])
            on_rust[d].append(c)
    everyone = [c for on in (on_php, on_py, on_rust) for cs in on.values() for c in cs]
    assert len(everyone) == 150
    pub_php, pub_py, pub_rust = (on["rfc6455"][0] for on in (on_php, on_py, on_rust))

    # Presence: every client of every node, seen from the PHP and the Python node.
    def converged():
        group = pub_py.ask(op="presence", group="chat")
        return (len(pub_php.call(cmd="nodes")) == 3 and pub_php.call(cmd="presence") == 150
                and pub_php.call(cmd="presence", group="chat") == 149
                and group["presence"] == 149 and len(group["nodes"]) == 3
                and pub_py.ask(op="presence")["presence"] == 150)
    wait_for(converged, 15, "presence 150 (149 in the group) on the PHP and the Python node")

    pub_php.send(json.dumps({"cmd": "all", "n": N, "tag": "PA"}))
    pub_php.send(json.dumps({"cmd": "group", "n": N, "tag": "PG"}))
    for text in SENT:
        pub_py.send(json.dumps({"op": "all", "text": text}))
        pub_py.send(json.dumps({"op": "group", "text": text}))
        pub_rust.send(text)
    received = []
    for c in everyone:
        got = {s: [] for s in STREAMS + [("all", "F")]}
        read_until_end(c, got, [s for s in STREAMS if c is not pub_php or s[0] == "all"])
        received.append((c, got))
    # A duplicate would arrive meanwhile, before this last broadcast.
    time.sleep(0.5)
    pub_php.send(json.dumps({"cmd": "all", "n": 0, "tag": "F"}))
    for c, got in received:
        read_until_end(c, got, [("all", "F")])
        for stream in STREAMS:
            want = [] if c is pub_php and stream[0] == "message" else SENT
            assert got[stream] == want, (c.draft, stream, got[stream])
    # Spelled out: the hixie-75 clients of the PHP and the Python node got
    # what an RFC 6455 client of the Rust node published.
    hixie75 = on_php["hixie-75"] + on_py["hixie-75"]
    assert [got[("message", "R")] for c, got in received if c in hixie75] == [SENT] * 20

    # Direct sends and closes from the PHP node and from the Python node to
    # connections of each other node.
    ids.update((c, c.ask(op="id")["id"]) for c in (on_py["hixie-75"][1], on_py["hybi-07"][1]))
    ids.update((c, c.call(cmd="id")) for c in (on_php["hixie-76"][1], on_php["rfc6455"][1]))
    for target, text in ((on_py["hixie-75"][1], "PHP to a hixie-75 client of Python"),
                         (on_rust["hixie-76"][1], "PHP to a hixie-76 client of Rust")):
        assert pub_php.call(cmd="sendTo", id=ids[target], text=text) is True
        assert target.direct() == text
    for target in (on_py["hybi-07"][1], on_rust["rfc6455"][1]):
        assert pub_php.call(cmd="closeTo", id=ids[target], code=4000,
                            reason="from PHP") is True
        assert target.direct() == ("close", 4000, "from PHP")
        target.close()
    for target, text in ((on_php["hixie-76"][1], "Python to a hixie-76 client of PHP"),
                         (on_rust["hixie-75"][1], "Python to a hixie-75 client of Rust")):
        assert pub_py.ask(op="send", to=ids[target], text=text) == {"ok": None}
        assert target.direct() == text
    for target in (on_php["rfc6455"][1], on_rust["hybi-07"][1]):
        assert pub_py.ask(op="close", to=ids[target], code=4001,
                          reason="from Python") == {"ok": True}
        assert target.direct() == ("close", 4001, "from Python")
        target.close()
    # The four closed connections leave the counts of every node.
    wait_for(lambda: pub_php.call(cmd="presence") == pub_py.ask(op="presence")["presence"] == 146,
             10, "presence 146 after the closes")
    # An id of no live node: refused on both.
    live = pub_php.call(cmd="nodes")
    nobody = next(n for n in range(1, 1 << 24) if n not in live) << 39 | 1
    assert pub_php.call(cmd="sendTo", id=nobody, text="x") is False
    assert pub_php.call(cmd="closeTo", id=nobody, code=1000, reason="") is False
    assert pub_py.ask(op="send", to=nobody, text="x") == {"error": "WebSocketClosedError"}
    assert pub_py.ask(op="close", to=nobody) == {"ok": False}

    for stats in (pub_php.call(cmd="stats"), pub_py.ask(op="stats")["stats"]):
        assert stats["connected"] and stats["dropped"] == 0 and stats["malformed"] == 0, stats
