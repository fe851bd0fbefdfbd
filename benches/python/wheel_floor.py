"""Echo rates of the Tornado drop-in (benches/python/tornado_echo.py) for
choosing the wheels' abi3 floors (python/Cargo.toml): run it once per
server interpreter (venvs with the cp39-, cp310- and cp311-abi3 wheel), the
client being this process (polysocket's engine over a blocking socket).

    python benches/python/wheel_floor.py SERVER-PYTHON [SECONDS]
    python benches/python/wheel_floor.py --send     # per call, this venv's wheel

Prints, for 32 B and 1 MiB binary messages, the server's CPU time per
echo (user + system, from /proc: it holds on a loaded host, where round
trips per second, also printed, do not).
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from polysocket import _native

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port: int):
    for _ in range(100):
        try:
            sock = socket.create_connection(("127.0.0.1", port))
            break
        except ConnectionRefusedError:
            time.sleep(0.1)
    else:
        raise SystemExit("server did not start")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    hs = _native.ClientHandshake("rfc6455", "127.0.0.1:%d" % port, "/")
    sock.sendall(hs.request_bytes())
    engine = None
    while engine is None:
        engine = hs.feed(sock.recv(65536))
    return sock, engine


def flush(sock, engine) -> None:
    out = engine.take_output()
    for chunk in out if isinstance(out, list) else [out]:
        sock.sendall(chunk)


def cpu_seconds(pid: int) -> float:
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_trips(sock, engine, payload: bytes, seconds: float) -> int:
    buf = bytearray(1 << 20)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        engine.send(payload, binary=True)
        flush(sock, engine)
        got = False
        while not got:
            k = sock.recv_into(buf)
            for kind, data in engine.receive(buf, k):
                if kind == _native.BINARY:
                    assert len(data) == len(payload)
                    got = True
        n += 1
    return n


def send_cost(n: int = 200_000) -> float:
    """CPU ns per `engine.send(32 B, binary=True)` in this process (the
    call the wheels' floors differ in: vectorcall from 3.10)."""
    lines = _native.ClientHandshake("rfc6455", "h", "/").request_bytes().decode().split("\r\n")
    method, target, _ = lines[0].split(" ")
    headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:] if line]
    _, engine = _native.ServerHandshake(method, target, headers).accept()
    payload, send = b"x" * 32, engine.send
    start = time.process_time()
    for _ in range(n // 1000):
        for _ in range(1000):
            send(payload, binary=True)
        engine.take_output()
    return (time.process_time() - start) / n * 1e9


def main() -> None:
    if sys.argv[1] == "--send":
        print("engine.send(32 B, binary=True): %.0f ns CPU per call" % send_cost())
        return
    server_python = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    port = free_port()
    server = subprocess.Popen([server_python, str(HERE / "tornado_echo.py"),
                               "--impl", "polysocket", "--port", str(port)])
    try:
        sock, engine = connect(port)
        for size, label in ((32, "32 B"), (1 << 20, "1 MiB")):
            round_trips(sock, engine, b"x" * size, 0.5)  # warm-up
            cpu, start = cpu_seconds(server.pid), time.perf_counter()
            n = round_trips(sock, engine, b"x" * size, seconds)
            cpu, wall = cpu_seconds(server.pid) - cpu, time.perf_counter() - start
            print("%-6s %8.1f us server CPU per echo  (%d echoes, %.0f/s)"
                  % (label, cpu / n * 1e6, n, n / wall), flush=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
