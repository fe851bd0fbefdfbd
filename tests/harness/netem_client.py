"""Clients for scripts/netem.sh: WebSocket traffic over an impaired link,
checked end to end (standard library only, asyncio; the handshake from
rawws). Every scenario prints one JSON line of figures and exits 1 when a
check fails.

  echo     HOST PORT [--clients N --messages M --relay]  sequence-numbered,
           checksummed messages echoed; whole, in order, none twice.
           --relay: through a relay in this process that delays every chunk
           by 100 ms +- 20 ms each way, keeping byte order.
  control  HOST PORT --out FILE --spans FILE   a round trip every 20 ms
           until SIGTERM; p50/p99/max in all and per scenario (the spans
           file's lines: name, start, end, wall clock) written to --out.
  cut      HOST PORT --netns NS --bound S [--busy]   (host side) a client
           in NS goes silent, the link is cut both ways without FIN/RST, and
           the server's socket is watched (ss) until keepalive closes it.
  idle     HOST PORT [--busy]   (the client `cut` starts in NS) connects,
           echoes, prints the time of its last send, then stays silent;
           --busy: keeps 1 MiB messages flowing both ways until the cut.
  slow-handshake HOST PORT --timeout S   the upgrade request at 1 byte/s.
  slow-frames    HOST PORT --messages M  frames at 1 byte/s after the
           handshake; they must come back whole.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rawws import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, accept_for, upgrade_request  # noqa: E402

# Message sizes cycled through: every length encoding, up to 64 KiB frames.
SIZES = [0, 1, 100, 125, 126, 1000, 4096, 65535, 65536, 20000]
HEAD = struct.Struct("!II")  # client id, sequence number
DIGEST = 16


class Failure(Exception):
    pass


def mask(payload):
    key = os.urandom(4)
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
    return key + masked


def frame(opcode, payload):
    """A masked, unfragmented client frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + (mask(payload) if n else os.urandom(4))


class Ws:
    """One client connection: frames in, pings answered, close seen."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.pings = 0

    @classmethod
    async def connect(cls, host, port):
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(upgrade_request(13, key))
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            raise Failure("handshake refused: %r" % lines[0])
        if "sec-websocket-accept: %s" % accept_for(key).lower() not in head.decode().lower():
            raise Failure("wrong Sec-WebSocket-Accept")
        return cls(reader, writer)

    async def send(self, payload, opcode=OP_BINARY):
        self.writer.write(frame(opcode, payload))
        await self.writer.drain()

    async def recv(self):
        """The next data message's payload; None once the server closed."""
        while True:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(n)
            if b1 & 0x80 or not b0 & 0x80:
                raise Failure("server frame masked or fragmented")
            opcode = b0 & 0x0F
            if opcode == OP_PING:
                self.pings += 1
                self.writer.write(frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                return None
            elif opcode != OP_PONG:
                return payload

    async def close(self):
        try:
            self.writer.write(frame(OP_CLOSE, struct.pack("!H", 1000)))
            await self.writer.drain()
            await asyncio.wait_for(self.reader.read(), 10)
        finally:
            self.writer.close()


def message(client, seq, rng):
    body = rng.randbytes(SIZES[seq % len(SIZES)])
    head = HEAD.pack(client, seq)
    return head + body + hashlib.blake2b(head + body, digest_size=DIGEST).digest()


def check(client, expected, payload):
    """The sequence number of an echoed message, after its checks."""
    if len(payload) < HEAD.size + DIGEST:
        raise Failure("client %d: echo cut short (%d bytes)" % (client, len(payload)))
    data, digest = payload[:-DIGEST], payload[-DIGEST:]
    if hashlib.blake2b(data, digest_size=DIGEST).digest() != digest:
        raise Failure("client %d: echo of #%d corrupted" % (client, expected))
    owner, seq = HEAD.unpack_from(data)
    if owner != client:
        raise Failure("client %d: got client %d's message" % (client, owner))
    if seq < expected:
        raise Failure("client %d: #%d delivered twice" % (client, seq))
    if seq > expected:
        raise Failure("client %d: #%d before #%d (reordered or lost)" % (client, seq, expected))
    return seq


async def echo_client(client, host, port, messages, window, stats):
    rng = random.Random(client)
    ws = await Ws.connect(host, port)
    credit = asyncio.Semaphore(window)

    async def sender():
        for seq in range(messages):
            await credit.acquire()
            await ws.send(message(client, seq, rng))

    task = asyncio.create_task(sender())
    try:
        for expected in range(messages):
            payload = await asyncio.wait_for(ws.recv(), 60)
            if payload is None:
                raise Failure("client %d: server closed after %d echoes" % (client, expected))
            check(client, expected, payload)
            stats["whole_in_order"] += 1
            stats["bytes"] += len(payload)
            credit.release()
        await task
        stats["pings_answered"] += ws.pings
        await ws.close()
    finally:
        task.cancel()


async def delayed_pump(reader, writer, delay, jitter):
    """Copies reader to writer, each chunk `delay` +- `jitter` later, never
    overtaking the chunk before it (a link with latency keeps byte order)."""
    queue = asyncio.Queue()

    async def deliver():
        while True:
            at, chunk = await queue.get()
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            if not chunk:
                writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()

    task = asyncio.create_task(deliver())
    last = 0.0
    try:
        while True:
            chunk = await reader.read(65536)
            last = max(last, time.monotonic() + delay + random.uniform(-jitter, jitter))
            await queue.put((last, chunk))
            if not chunk:
                break
        await task
    except (ConnectionError, asyncio.CancelledError):
        task.cancel()
    finally:
        writer.close()


async def start_relay(host, port):
    async def relay(c_reader, c_writer):
        s_reader, s_writer = await asyncio.open_connection(host, port)
        try:
            await asyncio.gather(delayed_pump(c_reader, s_writer, 0.1, 0.02),
                                 delayed_pump(s_reader, c_writer, 0.1, 0.02))
        except asyncio.CancelledError:
            pass  # the run is over

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def run_echo(args):
    host, port = args.host, args.port
    if args.relay:
        relay, port = await start_relay(host, port)
        host = "127.0.0.1"
    stats = {"clients": args.clients, "sent": args.clients * args.messages,
             "whole_in_order": 0, "bytes": 0, "pings_answered": 0}
    started = time.monotonic()
    await asyncio.gather(*(echo_client(c, host, port, args.messages, args.window, stats)
                           for c in range(args.clients)))
    stats["seconds"] = round(time.monotonic() - started, 2)
    if stats["whole_in_order"] != stats["sent"]:
        raise Failure("%d of %d echoes arrived" % (stats["whole_in_order"], stats["sent"]))
    return stats


async def run_control(args):
    ws = await Ws.connect(args.host, args.port)
    samples, seq = [], 0
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        t0 = time.monotonic()
        await ws.send(_small(seq))
        payload = await asyncio.wait_for(ws.recv(), 5)
        samples.append((time.time(), time.monotonic() - t0))
        if payload != _small(seq):
            raise Failure("control: echo #%d wrong" % seq)
        seq += 1
        try:
            await asyncio.wait_for(stop.wait(), 0.02)
        except asyncio.TimeoutError:
            pass
    await ws.close()
    # Per scenario (the spans file: name, start, end in wall-clock seconds).
    figures = {"all": percentiles([rtt for _, rtt in samples])}
    with open(args.spans) as f:
        for line in f:
            name, start, end = line.split()
            rtts = [rtt for t, rtt in samples if float(start) <= t <= float(end)]
            figures[name] = percentiles(rtts)
    with open(args.out, "w") as f:
        json.dump(figures, f)
    return figures


def percentiles(rtts):
    rtts = sorted(rtts) or [float("nan")]
    return {"round_trips": len(rtts),
            "p50_ms": round(rtts[len(rtts) // 2] * 1000, 2),
            "p99_ms": round(rtts[int(len(rtts) * 0.99)] * 1000, 2),
            "max_ms": round(rtts[-1] * 1000, 2)}


def _small(seq):
    head = HEAD.pack(0, seq)
    return head + hashlib.blake2b(head, digest_size=DIGEST).digest()


async def run_idle(args):
    ws = await Ws.connect(args.host, args.port)
    rng = random.Random(7)
    for seq in range(20):
        await ws.send(message(7, seq, rng))
        check(7, seq, await ws.recv())
    if not args.busy:
        # The last thing the server hears from us: keepalive counts from here.
        print(json.dumps({"last_sent": time.monotonic()}), flush=True)
        await asyncio.sleep(3600)
    # Busy: 1 MiB messages both ways without pause, so that the cut finds
    # the server in the middle of a write the link no longer takes.
    big = rng.randbytes(1 << 20)

    async def sender():
        while True:
            await ws.send(big)

    task = asyncio.create_task(sender())
    for n in range(4):
        if await ws.recv() != big:
            raise Failure("busy: echo corrupted")
    print(json.dumps({"last_sent": None}), flush=True)
    while await ws.recv() == big:
        pass
    task.cancel()


def server_sockets(port, peer):
    out = subprocess.run(["ss", "-tnH", "state", "established", "( sport = :%d )" % port],
                         capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if peer + ":" in line)


async def run_cut(args):
    """Host side: the idle client runs in the namespace; the cut is applied
    there (both directions dropped: no FIN, no RST reaches either end)."""
    ns = ["ip", "netns", "exec", args.netns]
    client = await asyncio.create_subprocess_exec(
        *ns, sys.executable, os.path.abspath(__file__), "idle", args.host, str(args.port),
        *(["--busy"] if args.busy else []),
        stdout=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(client.stdout.readline(), 30)
        last_sent = json.loads(line)["last_sent"]
        peer = args.peer
        if server_sockets(args.port, peer) != 1:
            raise Failure("cut: the server has no connection from %s" % peer)
        for chain in ("INPUT", "OUTPUT"):
            subprocess.run(ns + ["iptables", "-I", chain, "-j", "DROP"], check=True)
        # Busy: the client sends until the cut, so the server last heard
        # from it at the cut (within a round trip).
        last_sent = last_sent or time.monotonic()
        while server_sockets(args.port, peer):
            if time.monotonic() - last_sent > args.bound * 3:
                raise Failure("cut: the server still holds the half-open connection after %.1f s"
                              % (time.monotonic() - last_sent))
            await asyncio.sleep(0.02)
        detected = time.monotonic() - last_sent
    finally:
        client.kill()
        await client.wait()
        for chain in ("INPUT", "OUTPUT"):
            subprocess.run(ns + ["iptables", "-D", chain, "-j", "DROP"])
    figures = {"busy": args.busy, "detected_after_s": round(detected, 2), "bound_s": args.bound}
    # Never before the ping interval has passed, and within the bound (plus
    # 0.3 s for timers and this 20 ms poll).
    if not args.bound / 2 <= detected <= args.bound + 0.3:
        raise Failure("cut: detected after %.2f s, bound %.1f s" % (detected, args.bound))
    return figures


async def run_slow_handshake(args):
    reader, writer = await asyncio.open_connection(args.host, args.port)
    request = upgrade_request(13, base64.b64encode(os.urandom(16)).decode())
    started = time.monotonic()
    sent = 0

    async def trickle():
        nonlocal sent
        for byte in request:
            writer.write(bytes([byte]))
            sent += 1
            await asyncio.sleep(1)

    task = asyncio.create_task(trickle())
    try:
        answer = await asyncio.wait_for(reader.read(), args.timeout + 10)
    finally:
        task.cancel()
        writer.close()
    took = time.monotonic() - started
    status = answer.split(b"\r\n", 1)[0].decode("latin-1")
    figures = {"closed_after_s": round(took, 2), "timeout_s": args.timeout,
               "bytes_sent": sent, "answer": status}
    if not args.timeout - 0.1 <= took <= args.timeout + 0.5:
        raise Failure("slow handshake: cut after %.2f s, timeout %.1f s" % (took, args.timeout))
    return figures


async def run_slow_frames(args):
    ws = await Ws.connect(args.host, args.port)
    rng = random.Random(5)
    started = time.monotonic()
    for seq in range(args.messages):
        payload = HEAD.pack(5, seq) + rng.randbytes(2)
        payload += hashlib.blake2b(payload, digest_size=DIGEST).digest()
        for byte in frame(OP_BINARY, payload):
            ws.writer.write(bytes([byte]))
            await asyncio.sleep(1)
        check(5, seq, await asyncio.wait_for(ws.recv(), 10))
    await ws.close()
    return {"messages_whole": args.messages, "bytes_per_s": 1,
            "seconds": round(time.monotonic() - started, 1), "pings_answered": ws.pings}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["echo", "control", "cut", "idle", "slow-handshake", "slow-frames"])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--relay", action="store_true")
    p.add_argument("--busy", action="store_true")
    p.add_argument("--out")
    p.add_argument("--spans")
    p.add_argument("--netns")
    p.add_argument("--peer", default="10.203.0.2")
    p.add_argument("--bound", type=float, default=4.0)
    p.add_argument("--timeout", type=float, default=3.0)
    args = p.parse_args()
    run = {"echo": run_echo, "control": run_control, "cut": run_cut, "idle": run_idle,
           "slow-handshake": run_slow_handshake, "slow-frames": run_slow_frames}[args.scenario]
    try:
        figures = asyncio.run(run(args))
        if args.scenario != "control":  # its figures go to --out
            print(json.dumps(figures), flush=True)
    except (Failure, asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError) as e:
        print("FAIL %s: %s: %s" % (args.scenario, type(e).__name__, e), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
