#!/usr/bin/env python3
"""Pool the rounds of several `scripts/bench-runtime.sh` runs.

On a shared machine one run's median of 5 rounds moves by a few percent;
pooling the rounds of several runs of the same code narrows that. Each
round measured the servers back to back, so each round gives one paired
ratio: polysocket / the faster peer (throughput) and polysocket /
fastwebsockets (server CPU per message or connection). Prints the median
and the mean of those ratios per row.

    scripts/bench-pool.py benches/results/run-j.jsonl benches/results/run-k.jsonl ...
"""
import json
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
    print(f"| row | rounds | {PS} / faster peer: median (mean) | CPU {PS} / {CPU_PEER}: median |")
    print("|---|---|---|---|")
    for row in order:
        ratios, cpus = [], []
        for (_, rrow, _), servers in rounds.items():
            peers = [servers[p] for p in PEERS if p in servers]
            if rrow != row or PS not in servers or not peers:
                continue
            ratios.append(rate(servers[PS]) / max(rate(p) for p in peers))
            if CPU_PEER in servers and cpu(servers[PS]) and cpu(servers[CPU_PEER]):
                cpus.append(cpu(servers[PS]) / cpu(servers[CPU_PEER]))
        if ratios:
            c = f"{statistics.median(cpus):.3f}" if cpus else "—"
            print(f"| {row} | {len(ratios)} | {statistics.median(ratios):.3f} "
                  f"({statistics.mean(ratios):.3f}) | {c} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
