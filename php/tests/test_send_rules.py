"""Every send rule reaches the PHP caller, as php-websocket's callers
expect: what can never be sent on the connection (a control payload over
125 bytes, a close code that may not be sent, a close reason over 123
bytes, binary or ping on hixie, an unknown type) throws
\\InvalidArgumentException with core's message and leaves the connection
open; a connection that is closing or gone answers false. The rules are
core's (servers/apps.php RulesApp only calls send() and close()); each is
tried on the caller's own connection (straight into its engine) and on
another client's (through the server handle)."""

import time

import pytest
from test_drafts import hixie76, hixie_roundtrip
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

INVALID = "InvalidArgumentException: "
TOO_LONG = INVALID + "control frame payload longer than 125 bytes"


def hixie_read(c):
    return c.read_until(b"\xff")[1:-1].decode()


def invalid_close(code):
    return INVALID + "invalid close code %d" % code


RFC6455 = [
    ("text", "true"),
    ("ping", "true"),
    ("pong", "true"),
    ("ping125", "true"),
    ("ping200", TOO_LONG),
    ("pong126", TOO_LONG),
    ("reason124", TOO_LONG),
    ("type", INVALID + "unknown message type 'bogus' (text, binary, ping, pong, close)"),
] + [("close%d" % code, invalid_close(code)) for code in (999, 1004, 1005, 1006, 1015, 5000,
                                                          70000, -1)]

HIXIE = [
    ("text", "true"),
    ("binary", INVALID + "hixie-76 cannot carry this: binary messages"),
    ("ping", INVALID + "hixie-76 cannot carry this: ping and pong"),
    ("pong", INVALID + "hixie-76 cannot carry this: ping and pong"),
]


@pytest.mark.parametrize("other", [False, True], ids=["own", "other"])
def test_a_bad_argument_throws_and_leaves_the_connection_open(apps, other):
    with connect(apps.url + "/rules") as first, connect(apps.url + "/rules") as ws:
        for attempt, answer in RFC6455:
            ws.send(("other " if other else "") + attempt)
            if attempt == "text":
                assert (first if other else ws).recv(timeout=5) == "x"
            assert (attempt, ws.recv(timeout=5)) == (attempt, answer)
        # still open after every refusal: the last answer came back, and so
        # does an echo of the first client's
        first.send("text")
        assert first.recv(timeout=5) == "x"
        assert first.recv(timeout=5) == "true"


def test_hixie_cannot_carry_binary_or_ping(apps):
    with hixie76(apps.port, "rules") as old, connect(apps.url + "/rules") as new:
        for attempt, answer in HIXIE:
            got = hixie_roundtrip(old, attempt)
            if attempt == "text":
                assert got == "x"
                got = hixie_read(old)
            assert (attempt, got) == (attempt, answer)
            # the same on the hixie client from the other client's callback
            new.send("other " + attempt)
            if attempt == "text":
                assert hixie_read(old) == "x"
            assert (attempt, new.recv(timeout=5)) == (attempt, answer)


def test_closing_or_gone_answers_false(apps):
    with connect(apps.url + "/rules") as first, connect(apps.url + "/rules") as ws:
        # close(1000) starts the closing handshake; a second close and a send
        # after it, in the same callback, answer false
        ws.send("close-twice")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1000
        first.send("last")
        assert first.recv(timeout=5) == "[true,false,false]"
        # once the server has seen it go (onDisconnect), a send answers false
        deadline = time.time() + 5
        while True:
            first.send("gone")
            answer = first.recv(timeout=5)
            if answer != "no client gone yet" or time.time() > deadline:
                break
            time.sleep(0.05)
        assert answer == "false"


def test_closing_from_another_clients_callback_answers_false_after_the_close(apps):
    # the close is queued for the first client's task; what follows it in the
    # same callback is refused at once instead of failing unseen later
    with connect(apps.url + "/rules") as first, connect(apps.url + "/rules") as ws:
        ws.send("other close-twice")
        assert ws.recv(timeout=5) == "[true,false,false]"
        with pytest.raises(ConnectionClosed):
            first.recv(timeout=5)
        assert first.close_code == 1000
