"""One identity per connection, from handshake to close: the handler made
while a handshake is decided serves that very connection, even when many
handshakes look the same (hixie-75 has no key at all, hixie-76 clients may
repeat theirs), some clients vanish while their handshake is decided, and
deciding is slow. Raw sockets, both server modes (the ``serve`` fixture)."""

import random
import socket
import struct
import threading

import pytest

import rawws
from polysocket import WebSocketHandler
from test_handlers import wait_for

CLIENTS = 24
VANISH_EVERY = 3  # clients 0, 3, 6, ... reset during check_origin

# Per vanishing client: check_origin signals that it runs, then waits until
# the client reset its connection, so that the handshake fails after accept.
GATES = {}


class WhoAmI(WebSocketHandler):
    """Greets with what it saw of its own request; tags every echo with the
    cookie of the request it was made from."""

    def initialize(self, seen):
        self.seen = seen

    def check_origin(self, origin):
        n = self.request.header("X-Client")
        gate = GATES.get(n)
        if gate is not None:
            gate["entered"].set()
            gate["reset"].wait(5)
        else:
            threading.Event().wait(random.random() * 0.02)  # slow, without the GIL
        return True

    def open(self, room):
        self.user = self.request.headers["Cookie"].split("=", 1)[1]
        self.seen.append(self.user)
        self.write_message("%s|%s|%s|%s" % (room, self.user, self.request.header("X-Client"),
                                             self.get_argument("q", "")))

    def on_message(self, message):
        self.write_message("%s:%s" % (self.user, message))


HIXIE76_KEYS = (b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
                b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n")


def request(draft, n):
    """The same handshake for every client (path, query, keys), except for
    its cookie and X-Client header."""
    head = (b"GET /room/lobby?q=same HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: WebSocket\r\n"
            b"Connection: Upgrade\r\nOrigin: http://elsewhere.example\r\n"
            b"Cookie: user=u%d\r\nX-Client: %d\r\n" % (n, n))
    if draft == "hixie-76":
        return head + HIXIE76_KEYS + b"\r\n^n:ds[4U"
    return head + b"\r\n"


def client(port, draft, n, results):
    c = rawws.Conn(port)
    try:
        c.send(request(draft, n))
        gate = GATES.get(str(n))
        if gate is not None:
            assert gate["entered"].wait(5), "check_origin never ran for client %d" % n
            # Reset (not FIN): the server's 101 then cannot be written.
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            gate["reset"].set()
            results[n] = "vanished"
            return
        r = c.read_response(body=16 if draft == "hixie-76" else None)
        assert r.status == 101, r
        greeting = c.read_until(b"\xff")
        got = [greeting]
        for i in range(3):
            c.send(b"\x00m%d\xff" % i)
            got.append(c.read_until(b"\xff"))
        results[n] = got
    except BaseException as e:  # reported by the test
        results[n] = e
    finally:
        c.close()


@pytest.mark.parametrize("draft", ["hixie-75", "hixie-76"])
def test_identical_handshakes_each_get_their_own_handler(serve, draft):
    seen = []
    s = serve([(r"/room/(\w+)", WhoAmI, {"seen": seen})])
    GATES.clear()
    for n in range(0, CLIENTS, VANISH_EVERY):
        GATES[str(n)] = {"entered": threading.Event(), "reset": threading.Event()}
    results = {}
    threads = [threading.Thread(target=client, args=(s.port, draft, n, results))
               for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for n in range(CLIENTS):
        if str(n) in GATES:
            assert results[n] == "vanished"
        else:
            expected = [b"\x00lobby|u%d|%d|same\xff" % (n, n)]
            expected += [b"\x00u%d:m%d\xff" % (n, i) for i in range(3)]
            assert results[n] == expected, (n, results[n])
    assert sorted(seen) == sorted("u%d" % n for n in range(CLIENTS) if str(n) not in GATES)
    # What a failed handshake left behind is dropped at once, and every
    # handler of a closed connection is gone.
    dispatcher = s.server._dispatcher
    assert wait_for(lambda: not dispatcher._pending and not dispatcher.handlers), \
        (dispatcher._pending, dispatcher.handlers)
