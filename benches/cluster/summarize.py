"""The markdown tables of scripts/bench-cluster.sh from its JSON lines
($RESULTS, one fanout report per line tagged with row, system, round and
nodes_alive); the run's settings come from the environment."""

import json
import os
import platform
import statistics
import subprocess

E = os.environ
rows = [json.loads(line) for line in open(E["RESULTS"]) if line.strip()]
systems = list(dict.fromkeys(r["system"] for r in rows))


def pick(row, system):
    return [r for r in rows if r["row"] == row and r["system"] == system]


def med(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, d=0, scale=1.0):
    return "—" if v is None else f"{v * scale:,.{d}f}"


def faults(rs):
    """lost / duplicated / out of order, summed over the runs."""
    return " / ".join(f"{int(sum(r[k] for r in rs)):,}" for k in ("lost", "duplicated", "out_of_order"))


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
redis = sh("redis-server --version | grep -o 'v=[0-9.]*'")
print(f"Machine: {os.cpu_count()} cores \"{cpu}\", kernel {platform.release()}, Node {sh('node --version')}, "
      f"redis-server {redis}. Load average {E['LOAD_BEFORE']} before the run, "
      f"{E['LOAD_AFTER']} after; the run took {E['ELAPSED']} s.")
print(f"{E['NODES']} nodes per system on one redis-server, {int(E['SUBS']):,} subscribers spread over them, one "
      f"publisher on node 1, {E['SIZE']} B messages; {E['ROUNDS']} rounds × {E['DURATION']} s (after "
      f"{E['WARMUP']} s of warm-up), systems' order rotating; median round. `max`: window of {E['WINDOW']} "
      f"messages ahead of the slowest subscriber (its latency is mostly that queue); `paced`: {E['PACED']} × "
      "the message rate that round's `max` delivered; "
      + (f"`equal`: {E['RATE']} msg/s published on every system; " if E.get("RATE") else "")
      + "`kill-node`: a node SIGKILLed mid-run (loss must show). "
      "Nothing pinned: nodes, Redis and the generator share the cores.")
print()
print("| system | row | subscribers | **deliveries/s** | published msg/s | p50 ms | p99 ms | max ms "
      "| lost / dup / out of order | errors | nodes CPU (cores) | node CPU µs / delivery | Redis CPU | generator CPU "
      "| nodes alive |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for s in systems:
    for row in ("sanity", "max", "paced", "equal", "kill-node"):
        rs = pick(row, s)
        if not rs:
            continue
        errors = int(sum(r["errors"] for r in rs))
        alive = min(int(r["nodes_alive"]) for r in rs)
        print(f"| {s} | {row} | {fmt(med(rs, 'opened'))} / {fmt(med(rs, 'subs'))} "
              f"| **{fmt(med(rs, 'deliveries_per_s'))}** | {fmt(med(rs, 'publish_rate'), 1)} "
              f"| {fmt(med(rs, 'p50_us'), 1, 1e-3)} | {fmt(med(rs, 'p99_us'), 1, 1e-3)} "
              f"| {fmt(med(rs, 'max_us'), 1, 1e-3)} | {faults(rs)} | {errors} "
              f"| {fmt(med(rs, 'nodes_cpu'), 2)} | {fmt(med(rs, 'node_cpu_us_per_delivery'), 2)} "
              f"| {fmt(med(rs, 'redis_cpu'), 2)} | {fmt(med(rs, 'loadgen_cpu'), 2)} | {alive} / {E['NODES']} |")
print()
print("Per round (`max` rows): deliveries/s")
print()
print("| system | " + " | ".join(f"round {r}" for r in range(1, int(E["ROUNDS"]) + 1)) + " |")
print("|---|" + "---|" * int(E["ROUNDS"]))
for s in systems:
    by_round = {r["round"]: r["deliveries_per_s"] for r in pick("max", s)}
    print(f"| {s} | " + " | ".join(fmt(by_round.get(r)) for r in range(1, int(E["ROUNDS"]) + 1)) + " |")
errs = [r for r in rows if r.get("first_error")]
if errs:
    print()
    print("First errors: " + "; ".join(f"{r['system']} {r['row']} round {r['round']}: {r['first_error']}"
                                       for r in errs))
