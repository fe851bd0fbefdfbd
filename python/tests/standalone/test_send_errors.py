"""Every send, ping and close of the handler API reports what happened:
``ValueError`` for what the protocol or the draft forbids (checked once, in
the Rust core), ``WebSocketClosedError`` once the connection is closing or
gone; a refused call changes nothing (the connection still works)."""

import pytest
from websockets.sync.client import connect as sync_connect

import rawws
from polysocket import WebSocketClosedError, WebSocketHandler

# name -> the call a handler makes.
CALLS = {
    "binary": lambda h: h.write_message(b"\x00\x01", binary=True),
    "text": lambda h: h.write_message("fine"),
    "ping": lambda h: h.ping(b"p"),
    "ping-126": lambda h: h.ping(b"p" * 126),
    "ping-125": lambda h: h.ping(b"p" * 125),
    "close-5000": lambda h: h.close(5000),
    "close-999": lambda h: h.close(999),
    "close-1005": lambda h: h.close(1005),
    "close-1006": lambda h: h.close(1006),
    "close-1015": lambda h: h.close(1015),
    "close-70000": lambda h: h.close(70000),
    "close-reason-124": lambda h: h.close(1000, "r" * 124),
}


class Rules(WebSocketHandler):
    """Makes the call a message names and answers with its outcome."""

    def on_message(self, message):
        try:
            CALLS[message](self)
            outcome = "ok"
        except ValueError as e:
            outcome = "ValueError" if str(e) else "ValueError without a message"
        self.write_message("%s: %s" % (message, outcome))


RFC6455 = {
    "binary": "ok", "text": "ok", "ping": "ok", "ping-125": "ok", "ping-126": "ValueError",
    "close-5000": "ValueError", "close-999": "ValueError", "close-1005": "ValueError",
    "close-1006": "ValueError", "close-1015": "ValueError", "close-70000": "ValueError",
    "close-reason-124": "ValueError",
}


def test_rules_on_rfc6455(serve):
    s = serve([(r"/", Rules)])
    with sync_connect(s.url("/")) as ws:
        for name, outcome in RFC6455.items():
            ws.send(name)
            got = ws.recv(timeout=5)
            if name == "binary":
                assert got == b"\x00\x01"
                got = ws.recv(timeout=5)
            elif name == "text":
                assert got == "fine"
                got = ws.recv(timeout=5)
            assert got == "%s: %s" % (name, outcome)


# hixie-75 has no binary messages and no ping. (Its close frame carries no
# code, so core accepts any code there and sends none.)
HIXIE75 = {"binary": "ValueError", "ping": "ValueError", "ping-126": "ValueError",
           "text": "ok"}


def test_rules_on_hixie75(serve):
    s = serve([(r"/", Rules)])
    with rawws.Conn(s.port) as c:
        c.send(b"GET / HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
               b"Host: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\n\r\n")
        assert c.read_response().status == 101
        for name, outcome in HIXIE75.items():
            c.send(b"\x00" + name.encode() + b"\xff")
            if name == "text":
                assert c.read_until(b"\xff") == b"\x00fine\xff"
            assert c.read_until(b"\xff") == b"\x00%s: %s\xff" % (name.encode(), outcome.encode())


class AfterClose(WebSocketHandler):
    outcomes = None

    def on_message(self, message):
        self.close(1000, "r" * 123)  # the longest reason that fits
        outcomes = []
        for call in (lambda: self.write_message("late"), lambda: self.ping(b"late")):
            try:
                call()
                outcomes.append("sent")
            except WebSocketClosedError:
                outcomes.append("closed")
        self.close()  # idempotent, as Tornado's
        AfterClose.outcomes = outcomes


def test_write_and_ping_after_close_raise_closed(serve):
    AfterClose.outcomes = None
    s = serve([(r"/", AfterClose)])
    with sync_connect(s.url("/")) as ws:
        ws.send("x")
        with pytest.raises(Exception):
            ws.recv(timeout=5)
        assert (ws.close_code, ws.close_reason) == (1000, "r" * 123)
    assert AfterClose.outcomes == ["closed", "closed"]
