#!/usr/bin/env python3
"""Broadcast benchmark client: CONNS websockets connections to /bcast;
one of them sends ROUNDS triggers ("b SIZE" or "l SIZE") one after the
other, each waiting until every connection received the message. Prints
one JSON line: the median time the server's onData took to hand one
message to every client (reported by the server), and broadcasts/s and
deliveries/s end to end (bounded by this Python client's own speed).

    broadcast.py --port P [--conns 1000] [--rounds 50] [--size 32] [--how b|l]
"""

import argparse
import asyncio
import json
import statistics
import time

from websockets.asyncio.client import connect


async def main(a):
    url = "ws://127.0.0.1:%d/bcast" % a.port
    conns = []
    for i in range(0, a.conns, 100):
        conns += await asyncio.gather(*(connect(url, compression=None, max_queue=None)
                                        for _ in range(min(100, a.conns - i))))
    await asyncio.sleep(0.5)

    async def drain(ws):
        data = await ws.recv()
        assert len(data) == a.size
        if ws is conns[0]:
            timing = await ws.recv()
            assert timing.startswith("t ")
            on_data_us.append(int(timing[2:]))

    on_data_us = []
    trigger = "%s %d" % (a.how, a.size)
    start = time.perf_counter()
    for _ in range(a.rounds):
        await conns[0].send(trigger)
        await asyncio.gather(*(drain(ws) for ws in conns))
    elapsed = time.perf_counter() - start
    for ws in conns:
        await ws.close()
    print(json.dumps({"how": a.how, "conns": a.conns, "size": a.size, "rounds": a.rounds,
                      "on_data_us_median": statistics.median(on_data_us),
                      "broadcasts_per_s": a.rounds / elapsed,
                      "deliveries_per_s": a.rounds * a.conns / elapsed}))


p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--conns", type=int, default=1000)
p.add_argument("--rounds", type=int, default=50)
p.add_argument("--size", type=int, default=32)
p.add_argument("--how", default="b")
asyncio.run(main(p.parse_args()))
