#!/usr/bin/env python3
"""Slow senders against the tokio echo example: N clients each send 15 MiB
of a 16 MiB binary message (1 MiB fragments) and stall; prints the server's
RSS before and at its peak. Extra arguments go to the echo server.

    cargo build --release -p polysocket --features runtime --example echo
    python3 scripts/memory-attack.py 200                            # default budget
    python3 scripts/memory-attack.py 40 --max-buffered-total 0      # no budget
"""
import os
import struct
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))
from echo_server import free_port  # noqa: E402
from rawws import open_conn  # noqa: E402

MIB = 1 << 20


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024


def main(n, extra):
    port = free_port()
    echo = os.path.join(ROOT, "target", "release", "examples", "echo")
    proc = subprocess.Popen([echo, "--port", str(port)] + extra, stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        base = rss(proc.pid)
        peak, stop = [base], threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss(proc.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        piece, conns = b"z" * MIB, []
        for _ in range(n):
            c = open_conn(port)
            conns.append(c)
            try:
                for j in range(15):
                    # Masked with the all-zero key: the payload goes as it is.
                    head = bytes([0x2 if j == 0 else 0x0, 0x80 | 127]) + struct.pack("!Q", MIB)
                    c.sock.sendall(head + b"\0\0\0\0" + piece)
            except OSError:  # closed over the budget
                pass
        time.sleep(1.0)
        stop.set()
        sampler.join()
        print("%d slow senders, echo %s: RSS %.1f MiB, peak %.1f MiB"
              % (n, " ".join(extra) or "(defaults)", base / MIB, peak[0] / MIB))
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200, sys.argv[2:])
