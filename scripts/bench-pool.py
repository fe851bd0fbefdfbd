#!/usr/bin/env python3
"""Pool the rounds of several `scripts/bench-runtime.sh` runs.

On a shared machine one run's median of 5 rounds moves by a few percent;
pooling the rounds of several runs of the same code narrows that. Each
round measured the servers back to back, so each round gives one paired
ratio: polysocket / the faster peer (throughput) and polysocket /
fastwebsockets (server CPU per message or connection). Prints the median
and the mean of those ratios per row, polysocket against each peer with
a bootstrap 95 % interval of the median, and a reference: fastwebsockets
against the faster of the other two. Where all three servers are equally
fast (a latency-bound row), "against the faster of two others" comes out
below 1 for any of them — the larger of two noisy samples is biased up —
and the reference shows how far.

    scripts/bench-pool.py benches/results/run-j.jsonl benches/results/run-k.jsonl ...
"""
import json
import random
import statistics
import sys

PS, PEERS, CPU_PEER = "polysocket", ("fastwebsockets", "tokio-tungstenite"), "fastwebsockets"


def rate(r):
    return next(v for k, v in r.items() if k.endswith("_per_s") and k != "mb_per_s")


def cpu(r):
    return r.get("server_cpu_us_per_msg") or r.get("server_cpu_us_per_setup")


def main(paths):
    rounds = {}  # (file, row, round) -> {server: result}
    order = []
    for path in paths:
        for line in open(path):
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("row") in (None, "idle"):
                continue
            if r["row"] not in order:
                order.append(r["row"])
            rounds.setdefault((path, r["row"], r["round"]), {})[r["server"]] = r
    print(f"| row | rounds | {PS} / faster peer: median (mean) | {PS} / each peer: median [95 % CI] "
          f"| reference: {CPU_PEER} / the faster of the others | CPU {PS} / {CPU_PEER}: median |")
    print("|---|---|---|---|---|---|")
    for row in order:
        ratios, cpus, reference = [], [], []
        each = {p: [] for p in PEERS}
        for (_, rrow, _), servers in rounds.items():
            peers = [servers[p] for p in PEERS if p in servers]
            if rrow != row or PS not in servers or not peers:
                continue
            ratios.append(against_fastest(PS, servers))
            for p in PEERS:
                if p in servers:
                    each[p].append(rate(servers[PS]) / rate(servers[p]))
            if CPU_PEER in servers:
                reference.append(against_fastest(CPU_PEER, servers))
            if CPU_PEER in servers and cpu(servers[PS]) and cpu(servers[CPU_PEER]):
                cpus.append(cpu(servers[PS]) / cpu(servers[CPU_PEER]))
        if ratios:
            c = f"{statistics.median(cpus):.3f}" if cpus else "—"
            per_peer = "; ".join(f"{p} {statistics.median(v):.3f} [{interval(v)}]"
                                 for p, v in each.items() if v)
            ref = f"{statistics.median(reference):.3f}" if reference else "—"
            print(f"| {row} | {len(ratios)} | {statistics.median(ratios):.3f} "
                  f"({statistics.mean(ratios):.3f}) | {per_peer} | {ref} | {c} |")


def against_fastest(name, servers):
    """`name`'s rate over the fastest of the other servers in the round."""
    return rate(servers[name]) / max(rate(r) for s, r in servers.items() if s != name)


def interval(values, draws=2000):
    """95 % bootstrap interval of the median (fixed seed: reruns agree)."""
    rng = random.Random(1)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return f"{medians[int(draws * 0.025)]:.3f}, {medians[int(draws * 0.975) - 1]:.3f}"


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
