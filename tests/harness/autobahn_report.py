#!/usr/bin/env python3
"""Judge and document an Autobahn|Testsuite fuzzingclient report
(standard library only).

    autobahn_report.py check INDEX_JSON [--allow BEHAVIOURS]
        Lists every case whose behaviour or closing behaviour is not OK and
        exits 1 if any of them is FAILED, NON-STRICT or UNIMPLEMENTED
        (INFORMATIONAL is allowed: those cases have no right answer).
        --allow takes a comma-separated list of behaviours to accept too.

    autobahn_report.py markdown INDEX_JSON OUT.md --command CMD --server CMD
        Writes the conformance document: behaviour totals, per-section
        counts, every non-OK case, and how and where the run was made.
"""

import argparse
import collections
import datetime
import json
import os
import platform
import subprocess
import sys

ORDER = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
STRICT_FAIL = {"FAILED", "NON-STRICT", "UNIMPLEMENTED"}

# Section titles of the Autobahn|Testsuite case tree.
SECTIONS = {
    "1": "Framing (text and binary messages)",
    "2": "Pings/Pongs",
    "3": "Reserved bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 handling",
    "7": "Close handling",
    "9": "Limits/Performance",
    "10": "Misc (auto-fragmentation)",
    "12": "WebSocket compression (different payloads)",
    "13": "WebSocket compression (different parameters)",
}


def case_key(case_id):
    return tuple(int(p) if p.isdigit() else p for p in case_id.split("."))


def load(path):
    if os.path.isdir(path):
        path = os.path.join(path, "index.json")
    with open(path) as f:
        report = json.load(f)
    if len(report) != 1:
        raise SystemExit("expected one agent in %s, found %r" % (path, sorted(report)))
    (agent, cases), = report.items()
    if not cases:
        raise SystemExit("%s holds no results" % path)
    return agent, cases


def odd_cases(cases):
    """(case id, behaviour, closing behaviour) of every case not fully OK."""
    out = []
    for cid in sorted(cases, key=case_key):
        res = cases[cid]
        b, bc = res.get("behavior", "?"), res.get("behaviorClose", "?")
        if b != "OK" or bc not in ("OK", "INFORMATIONAL"):
            out.append((cid, b, bc))
    return out


def cmd_check(args):
    _agent, cases = load(args.report)
    allowed = {a.strip() for a in (args.allow or "").split(",") if a.strip()}
    bad = set(STRICT_FAIL) - allowed
    counts = collections.Counter(r.get("behavior", "?") for r in cases.values())
    blocking = []
    for cid, b, bc in odd_cases(cases):
        flag = b in bad or bc in bad or b not in ORDER
        if flag:
            blocking.append(cid)
        print("  %-10s behavior=%-13s close=%-13s%s" % (cid, b, bc, "  <- not accepted" if flag else ""))
    print("autobahn: %d cases: %s" % (len(cases), ", ".join(
        "%d %s" % (counts[b], b) for b in ORDER + sorted(set(counts) - set(ORDER)) if counts[b])))
    if blocking:
        print("autobahn: FAIL: %d case(s) FAILED, NON-STRICT or UNIMPLEMENTED: %s"
              % (len(blocking), " ".join(blocking)))
        return 1
    print("autobahn: PASS (no FAILED, NON-STRICT or UNIMPLEMENTED case)")
    return 0


def git(*args):
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = "%.0f GiB" % (kb / 1024 / 1024)
    except (OSError, ValueError, IndexError):
        pass
    distro = "?"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    distro = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "%s, %d cores (%s), %s RAM, Linux %s, Python %s" % (
        distro, os.cpu_count() or 0, cpu, mem, platform.release(), platform.python_version())


def case_detail(report_path, res):
    """The case's description and outcome from its own report file."""
    base = report_path if os.path.isdir(report_path) else os.path.dirname(report_path)
    try:
        with open(os.path.join(base, res["reportfile"])) as f:
            case = json.load(f)
    except (OSError, ValueError, KeyError):
        return ""
    text = " ".join(str(case.get("description", "")).split())
    result = " ".join(str(case.get("result", "")).split())
    close = case.get("remoteCloseCode")
    return "%s Result: %s (server's close code: %s)" % (text, result, close)


def cmd_markdown(args):
    agent, cases = load(args.report)
    counts = collections.Counter(r.get("behavior", "?") for r in cases.values())
    close_counts = collections.Counter(r.get("behaviorClose", "?") for r in cases.values())
    behaviours = ORDER + sorted(set(counts) - set(ORDER))
    by_section = collections.defaultdict(collections.Counter)
    by_subsection = collections.defaultdict(collections.Counter)
    for cid, r in cases.items():
        parts = cid.split(".")
        by_section[parts[0]][r.get("behavior", "?")] += 1
        by_subsection[".".join(parts[:2])][r.get("behavior", "?")] += 1
    duration = sum(r.get("duration", 0) or 0 for r in cases.values()) / 1000.0
    odd = odd_cases(cases)
    failing = [c for c, b, bc in odd if b in STRICT_FAIL or bc in STRICT_FAIL]

    L = []
    L.append("# Conformance: Autobahn|Testsuite")
    L.append("")
    L.append("<!-- Generated by scripts/autobahn-full.sh; do not edit by hand. -->")
    L.append("")
    L.append("polysocket's echo server, run against every case (%d) of the Autobahn|Testsuite "
             "fuzzing client (`wstest -m fuzzingclient`, autobahntestsuite 25.10.1 on "
             "Python 3, from `../shared/tools/autobahn/`). Sections 12 and 13 negotiate "
             "permessage-deflate with every parameter combination the suite offers."
             % len(cases))
    L.append("")
    verdict = ("**No case is FAILED, NON-STRICT or UNIMPLEMENTED.**" if not failing else
               "**%d case(s) are FAILED, NON-STRICT or UNIMPLEMENTED: %s.**"
               % (len(failing), ", ".join(failing)))
    L.append(verdict)
    L.append("")
    L.append("## Result per behaviour")
    L.append("")
    L.append("| behaviour | cases |")
    L.append("|---|---:|")
    for b in behaviours:
        L.append("| %s | %d |" % (b, counts[b]))
    L.append("| **total** | **%d** |" % len(cases))
    L.append("")
    L.append("Closing behaviour: %s." % ", ".join(
        "%d %s" % (close_counts[b], b) for b in ORDER + sorted(set(close_counts) - set(ORDER))
        if close_counts[b]))
    L.append("")
    L.append("## Per section")
    L.append("")
    L.append("| section | title | cases | " + " | ".join(behaviours) + " |")
    L.append("|---|---|---:|" + "---:|" * len(behaviours))
    for sec in sorted(by_section, key=case_key):
        c = by_section[sec]
        L.append("| %s | %s | %d | %s |" % (sec, SECTIONS.get(sec, ""), sum(c.values()),
                                            " | ".join(str(c[b]) if c[b] else "" for b in behaviours)))
    L.append("")
    L.append("<details><summary>Per subsection</summary>")
    L.append("")
    L.append("| subsection | cases | " + " | ".join(behaviours) + " |")
    L.append("|---|---:|" + "---:|" * len(behaviours))
    for sub in sorted(by_subsection, key=case_key):
        c = by_subsection[sub]
        L.append("| %s | %d | %s |" % (sub, sum(c.values()),
                                       " | ".join(str(c[b]) if c[b] else "" for b in behaviours)))
    L.append("")
    L.append("</details>")
    L.append("")
    L.append("## Cases not plain OK")
    L.append("")
    if odd:
        L.append("| case | behaviour | closing behaviour | description |")
        L.append("|---|---|---|---|")
        for cid, b, bc in odd:
            desc = case_detail(args.report, cases[cid])
            L.append("| %s | %s | %s | %s |" % (cid, b, bc, desc.replace("|", "\\|")))
        L.append("")
        if all(b == "INFORMATIONAL" for _, b, _ in odd):
            L.append("INFORMATIONAL cases have no right answer: the suite records what the "
                     "server did (e.g. which close code it echoed).")
            L.append("")
    else:
        L.append("None.")
        L.append("")
    L.append("## How this was made")
    L.append("")
    L.append("| | |")
    L.append("|---|---|")
    L.append("| command | `%s` |" % args.command)
    L.append("| server under test | `%s` |" % args.server)
    L.append("| polysocket commit | `%s` |" % (args.commit or git("rev-parse", "--short=12", "HEAD")))
    L.append("| date | %s |" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    L.append("| machine | %s |" % machine())
    L.append("| wall time | %s |" % (args.wall or "?"))
    L.append("| sum of case durations | %.0f s |" % duration)
    L.append("| agent name in the report | %s |" % agent)
    L.append("")
    L.append("The CI subset (sections 1-10, 12.1, 13.1, 13.7; fails on any FAILED, NON-STRICT "
             "or UNIMPLEMENTED case) runs in `scripts/test-interop.sh` via `scripts/autobahn.sh`. "
             "The HTML report of this run is written to `target/autobahn/full/index.html` "
             "(not committed).")
    L.append("")
    with open(args.out, "w") as f:
        f.write("\n".join(L))
    print("wrote %s" % args.out)
    return 1 if failing else 0


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("report")
    c.add_argument("--allow")
    m = sub.add_parser("markdown")
    m.add_argument("report")
    m.add_argument("out")
    m.add_argument("--command", required=True)
    m.add_argument("--server", required=True)
    m.add_argument("--commit")
    m.add_argument("--wall")
    args = p.parse_args(argv)
    return cmd_check(args) if args.cmd == "check" else cmd_markdown(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
