"""The PHP half of scripts/leak-check.sh: php/tests/leak_daemon.php under
valgrind memcheck (USE_ZEND_ALLOC=0, so every PHP value is a malloc
valgrind sees), driven over real sockets through every event kind and
error path, ended by `exit()` in a callback. Then valgrind's log is read:
a "definitely" or "indirectly lost" record, or a memory error, whose stack
goes through the extension fails the check; PHP's and libc's own are
counted and shown but do not.

    python leak_php.py --ext target/release/polysocket.so [--rounds 2]
        [--log target/leaks/valgrind-php.log] [--supp scripts/leak-check.supp]
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import time

from rawws import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Conn, close_payload,
                   encode_frame, open_conn, upgrade_request)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAEMON = os.path.join(REPO, "php", "tests", "leak_daemon.php")

HIXIE76 = (b"GET /echo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\nUpgrade: WebSocket\r\n"
           b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nOrigin: http://example.com\r\n\r\n"
           b"^n:ds[4U")
HIXIE75 = (b"GET /echo HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
           b"Host: example.com\r\nOrigin: http://example.com\r\n\r\n")
# Frames of the extension's code: the .so, its Rust crates, Rust's std.
OURS = re.compile(r"polysocket|ext_php_rs|\.rs:\d+|/rustc/|tokio|<.*>::")
TIMEOUT = 60  # a reply under valgrind can take seconds


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def close_code(ws):
    try:
        while True:
            ws.recv(timeout=TIMEOUT)
    except ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else None


def raw_close_code(c):
    """Read frames until the server's close; its code (None: no close frame)."""
    while True:
        try:
            op, payload = c.read_frame()[2:]
        except (ConnectionError, EOFError, AssertionError, OSError):
            return None
        if op == OP_CLOSE:
            return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005


def echo_text(ws, text):
    ws.send(text)
    assert ws.recv(timeout=TIMEOUT) == text


def rfc6455(url):
    """Every kind of event and command on the current protocol (deflate on)."""
    with connect(url + "/echo?x=1", open_timeout=TIMEOUT, close_timeout=TIMEOUT,
                 subprotocols=None) as ws:
        echo_text(ws, "hello ✓")
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=TIMEOUT) == b"\x00\x01binary"
        echo_text(ws, "x" * 70000)  # a 64-bit length, a deflated reply
        ws.ping(b"are you there").wait(TIMEOUT)
        ws.send("info")
        info = ws.recv(timeout=TIMEOUT)
        assert "LeakEcho" in info, info
        ws.send("unknown")
        assert ws.recv(timeout=TIMEOUT) == "array (\n  0 => false,\n  1 => false,\n)"
        ws.send("broadcast")
        got = [ws.recv(timeout=TIMEOUT) for _ in range(4)]
        assert got[0] == "to all" and got[2] == b"to list" and got[3].startswith("presence"), got
        ws.send("refused")
        assert ws.recv(timeout=TIMEOUT) == "caught 2"
    for code in (1000, 1001, 4000):
        with connect(url + "/echo", open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
            ws.send("close:%d" % code)
            assert close_code(ws) == code
    with connect(url + "/echo", open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        ws.send("closeto")
        assert close_code(ws) == 4001
    with connect(url + "/echo", open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        ws.close(4321, "client says bye")


def hybi(port):
    """hybi-08 framing by hand: text, binary, ping, a client close code."""
    with open_conn(port, version=8) as c:
        c.sock.settimeout(TIMEOUT)
        c.send(encode_frame(OP_TEXT, b"hybi"))
        assert c.read_message()[1] == b"hybi"
        c.send(encode_frame(OP_BINARY, b"\xff\x00"))
        assert c.read_message()[1] == b"\xff\x00"
        c.send(encode_frame(OP_PING, b"p"))
        assert c.read_frame()[2:] == (OP_PONG, b"p")
        c.send(encode_frame(OP_CLOSE, close_payload(4002, b"bye")))
        assert raw_close_code(c) == 4002


def hixie(port):
    with Conn(port, timeout=TIMEOUT) as c:
        c.send(HIXIE76)
        assert c.read_response(body=16).status == 101
        c.send(b"\x00hixie-76\xff")
        assert c.read_until(b"\xff") == b"\x00hixie-76\xff"
        c.send(b"\xff\x00")  # hixie-76's closing handshake
        c.read_to_eof()
    with Conn(port, timeout=TIMEOUT) as c:
        c.send(HIXIE75)
        assert c.read_response(body=0).status == 101
        c.send(b"\x00hixie-75\xff")
        assert c.read_until(b"\xff") == b"\x00hixie-75\xff"
        c.sock.shutdown(socket.SHUT_WR)
        c.read_to_eof()


def refused(port):
    """Rejected handshakes: unknown application, bad version, not HTTP."""
    for request in (upgrade_request(path="/nope"), upgrade_request(version=99),
                    b"HELLO\r\n\r\n", upgrade_request(key=None)):
        with Conn(port, timeout=TIMEOUT) as c:
            c.send(request)
            status = c.read_response().status
            assert 400 <= status < 500, (request, status)


def errors(url, port):
    """Limits crossed, protocol errors, clients that vanish, callbacks that throw."""
    with open_conn(port) as c:  # past the 1 MiB budget: 1013
        c.sock.settimeout(TIMEOUT)
        try:
            c.send(encode_frame(OP_BINARY, b"\x00" * (2 << 20)))
        except OSError:
            pass  # the server may close before reading it all
        assert raw_close_code(c) in (1013, None)
    with open_conn(port) as c:  # unmasked: 1002
        c.sock.settimeout(TIMEOUT)
        c.send(encode_frame(OP_TEXT, b"unmasked", mask=False))
        assert raw_close_code(c) == 1002
    with open_conn(port) as c:  # not UTF-8: 1007
        c.sock.settimeout(TIMEOUT)
        c.send(encode_frame(OP_TEXT, b"\xc3\x28"))
        assert raw_close_code(c) == 1007
    for partial in (encode_frame(OP_TEXT, b"x" * 1000)[:300], b""):
        c = open_conn(port)  # gone mid-frame (and idle), with a reset
        c.send(partial)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
    with connect(url + "/boom?connect", open_timeout=TIMEOUT) as ws:
        assert close_code(ws) == 1011
    with connect(url + "/boom", open_timeout=TIMEOUT) as ws:
        ws.send("throw")
        assert close_code(ws) == 1011
    with connect(url + "/boom", open_timeout=TIMEOUT) as ws:
        ws.send(b"no onBinaryData")
        assert close_code(ws) == 1003
    with connect(url + "/boom?disconnect", open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        ws.close()


def scenario(port, rounds):
    url = "ws://127.0.0.1:%d" % port
    for _ in range(rounds):
        rfc6455(url)
        hybi(port)
        hixie(port)
        refused(port)
        errors(url, port)
    # Clients still open when the daemon ends: their clean-up is checked too.
    alive = [connect(url + "/echo", open_timeout=TIMEOUT), open_conn(port, version=8)]
    with connect(url + "/boom", open_timeout=TIMEOUT) as ws:
        ws.send("exit")
        close_code(ws)
    for c in alive:
        c.close()


RECORD = re.compile(r"^==\d+== ([\d,]+) (?:\(([\d,]+) direct, ([\d,]+) indirect\) )?bytes in "
                    r"([\d,]+) blocks are (definitely|indirectly|possibly) lost")
ERROR = re.compile(r"^==\d+== (Invalid (read|write|free)|Conditional jump|Use of uninit|"
                   r"Mismatched free|Syscall param|Source and destination overlap)")


def verdict(log_path):
    """(failures, summary lines) from valgrind's log."""
    blocks, current = [], None
    for line in open(log_path, errors="replace"):
        line = line.rstrip("\n")
        body = re.sub(r"^==\d+== ?", "", line)
        if RECORD.match(line) or ERROR.match(line):
            current = [line]
            blocks.append(current)
        elif current is not None:
            if body.strip() == "":
                current = None
            else:
                current.append(line)
    failures, theirs = [], {"definitely": 0, "indirectly": 0, "possibly": 0, "errors": 0}
    for block in blocks:
        ours = any(OURS.search(frame) for frame in block[1:])
        m = RECORD.match(block[0])
        kind = m.group(5) if m else "errors"
        if ours and kind != "possibly":
            failures.append("\n".join(block))
        elif not ours:
            theirs[kind] += 1
    summary = [re.sub(r"^==\d+== +", "", l.rstrip()) for l in open(log_path, errors="replace")
               if re.search(r"(definitely|indirectly|possibly) lost:|still reachable:|"
                            r"ERROR SUMMARY|suppressed:", l)]
    summary.append("records not through the extension (PHP, libc; not failing): %s" % theirs)
    return failures, summary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ext", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--log", default=os.path.join(REPO, "target", "leaks", "valgrind-php.log"))
    ap.add_argument("--supp", default=os.path.join(REPO, "scripts", "leak-check.supp"))
    ap.add_argument("--parse-only", action="store_true", help="only read an existing log")
    a = ap.parse_args()
    if not a.parse_only:
        os.makedirs(os.path.dirname(a.log), exist_ok=True)
        port = free_port()
        env = dict(os.environ, USE_ZEND_ALLOC="0", ZEND_DONT_UNLOAD_MODULES="1")
        argv = ["valgrind", "--tool=memcheck", "--leak-check=full",
                "--show-leak-kinds=definite,indirect,possible", "--num-callers=40",
                "--suppressions=" + os.path.abspath(a.supp), "--log-file=" + os.path.abspath(a.log),
                "php", "-n", "-d", "extension=" + os.path.abspath(a.ext),
                DAEMON, "--port", str(port)]
        out_path = a.log + ".out"
        started = time.time()
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 120
            while True:
                if proc.poll() is not None:
                    sys.exit("leak-check php: the daemon ended early (%s):\n%s"
                             % (proc.returncode, open(out_path).read()))
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        sys.exit("leak-check php: the daemon did not listen within 120 s")
                    time.sleep(0.5)
            scenario(port, a.rounds)
            rc = proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
        print("php: %d rounds under valgrind in %.0f s, daemon exit status %d"
              % (a.rounds, time.time() - started, rc))
    failures, summary = verdict(a.log)
    for line in summary:
        print("php:   " + line)
    if failures:
        print("\n\n".join(failures))
        sys.exit("leak-check php: %d valgrind records through the extension (above; log %s)"
                 % (len(failures), a.log))
    print("php: nothing lost, no memory error, through the extension")


if __name__ == "__main__":
    main()
