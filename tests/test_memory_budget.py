"""Memory stays bounded under attack (issue 14, point 6): hundreds of clients
that each send most of a large message and stall cannot take the echo
server's RSS past its buffer budget plus a fixed overhead, while clients
exchanging small messages keep being echoed.

The server is the tokio echo example (the session's build), started here
with a small budget; set BUDGET_OFF=1 to start it without one and watch the
test fail (RSS grows with the number of slow senders)."""

import os
import struct
import subprocess
import threading
import time

import pytest

from echo_server import BUILD_CMD, DEFAULT_BINARY, REPO, EchoServer, cargo_env
from rawws import OP_TEXT, open_conn

MIB = 1 << 20
BUDGET = 32 * MIB
MESSAGE = 2 * MIB  # announced by each slow sender...
SENT = 3 * MIB // 2  # ...of which it sends this much, then stalls
SLOW_SENDERS = 300
FRAGMENT = 64 * 1024
# Base RSS, and what the budget leaves out: 16 KiB per connection, what one
# read per worker brings before it is counted, the allocator's slack.
OVERHEAD = 48 * MIB


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for %d" % pid)


def fragment(payload, first):
    """A masked binary fragment (FIN clear) with the all-zero mask key, so
    that the payload goes as it is."""
    opcode = 0x2 if first else 0x0
    return bytes([opcode, 0x80 | 127]) + struct.pack("!Q", len(payload)) + b"\0\0\0\0" + payload


def slow_sender(port):
    """Send SENT bytes of a MESSAGE-byte message and stall; the socket, or
    None once the server closed it."""
    c = open_conn(port)
    payload = b"\x5a" * FRAGMENT
    try:
        for i in range(SENT // FRAGMENT):
            c.sock.sendall(fragment(payload, i == 0))
    except OSError:  # refused over the budget, and reset
        c.close()
        return None
    return c


def chatter(port, stop, counts, errors):
    try:
        c = open_conn(port)
        n = 0
        while not stop.is_set():
            text = ("%d " % n).encode() + b"x" * 1000
            c.send_frame(OP_TEXT, text)
            assert c.read_message() == (OP_TEXT, text)
            n += 1
        counts.append(n)
        c.close()
    except Exception as e:  # reported by the test
        errors.append(repr(e))


@pytest.fixture
def budgeted():
    """An echo server of its own with a 32 MiB budget (the tokio echo
    example, whatever server the session runs)."""
    subprocess.run(BUILD_CMD, cwd=REPO, env=cargo_env(), check=True)
    budget = 0 if os.environ.get("BUDGET_OFF") == "1" else BUDGET
    template = "%s --host 127.0.0.1 --port {port} --max-message-size %d --max-buffered-total %d" % (
        DEFAULT_BINARY, 4 * MIB, budget)
    server = EchoServer(template=template, log_path=os.path.join(REPO, "target", "interop", "budget-echo.log")).start()
    yield server
    server.stop()


def test_slow_senders_cannot_take_the_server_past_its_budget(budgeted):
    pid, port = budgeted.proc.pid, budgeted.port
    base = rss(pid)
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    counts, errors = [], []
    chatters = [threading.Thread(target=chatter, args=(port, stop, counts, errors))
                for _ in range(4)]
    for t in chatters:
        t.start()
    started = time.monotonic()
    senders = [slow_sender(port) for _ in range(SLOW_SENDERS)]
    time.sleep(0.5)
    stop.set()
    for t in chatters + [sampler]:
        t.join()
    for c in senders:
        if c is not None:
            c.close()
    growth = peak[0] - base
    print("base RSS %.1f MiB, peak %.1f MiB (+%.1f), %s echoes, %.1f s"
          % (base / MIB, peak[0] / MIB, growth / MIB, counts, time.monotonic() - started))
    assert not errors, errors
    assert len(counts) == 4 and min(counts) > 10, counts
    assert growth <= BUDGET + OVERHEAD, "RSS grew by %.1f MiB, budget %d MiB + %d MiB" % (
        growth / MIB, BUDGET // MIB, OVERHEAD // MIB)
