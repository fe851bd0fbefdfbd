#!/usr/bin/env bash
# Runs the core's criterion benchmarks and prints the figures of
# docs/BENCHMARKS.md as a markdown table (median of criterion's estimates).
#   scripts/bench-core.sh [extra criterion args, e.g. a filter]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo bench -p polysocket --bench engine -- --warm-up-time 2 --measurement-time 5 "$@" >&2
python3 - <<'PY'
import json, pathlib
root = pathlib.Path("target/criterion")
def median(group, name):
    p = root / group / name / "new" / "estimates.json"
    return json.loads(p.read_text())["median"]["point_estimate"] if p.exists() else None
def nbytes(group, name):
    p = root / group / name / "new" / "benchmark.json"
    t = json.loads(p.read_text()).get("throughput") or {}
    return t.get("Bytes")
def fmt_ns(ns):
    return f"{ns/1000:.2f} µs" if ns >= 1000 else f"{ns:.1f} ns"
rows = []
MiB = 1 << 20
m, c = median("mask", "apply_mask/1048576"), median("mask", "memcpy/1048576")
if m and c:
    rows.append(("unmask 1 MiB (in place)", fmt_ns(m), f"{MiB/m:.1f} GB/s", f"memcpy 1 MiB: {fmt_ns(c)} ({MiB/c:.1f} GB/s); unmask/memcpy time = {m/c:.2f}"))
for size in (64, 4096):
    m, c = median("mask", f"apply_mask/{size}"), median("mask", f"memcpy/{size}")
    if m and c:
        rows.append((f"unmask {size} B", fmt_ns(m), f"{size/m:.1f} GB/s", f"memcpy: {fmt_ns(c)}"))
for name, label in [
    ("decode_masked_text_64B_to_borrowed_event", "decode masked 64 B text frame → event (`poll_ref`)"),
    ("decode_masked_text_64B_to_event", "decode masked 64 B text frame → event (`poll`, owned `Bytes`)"),
    ("decode_hixie_text_64B_to_event", "decode hixie 64 B text frame → event (`poll`)"),
    ("encode_server_text_64B", "encode 64 B server text frame"),
]:
    v = median("frame", name)
    if v:
        rows.append((label, fmt_ns(v), f"{1e3/v:.1f} M/s", "receive() of the frame included" if "decode" in name else ""))
v = median("frame", "decode_masked_text_64B_x100_batch")
if v:
    rows.append(("decode masked 64 B frames, 100 per read (`poll`)", fmt_ns(v/100) + " / frame", f"{100e3/v:.1f} M/s", ""))
u = {n: median("utf8", n) for n in ["polysocket_validate_1MiB", "polysocket_streaming_1MiB_in_4KiB", "simdutf8_basic_1MiB", "std_from_utf8_1MiB"]}
if all(u.values()):
    size = nbytes("utf8", "polysocket_validate_1MiB")
    for n, label in [("polysocket_validate_1MiB", "UTF-8 validate 1 MiB (one shot)"), ("polysocket_streaming_1MiB_in_4KiB", "UTF-8 validate 1 MiB streaming in 4 KiB chunks")]:
        rows.append((label, fmt_ns(u[n]), f"{size/u[n]:.1f} GB/s", f"simdutf8 {size/u['simdutf8_basic_1MiB']:.1f} GB/s, std {size/u['std_from_utf8_1MiB']:.1f} GB/s"))
for name, label in [("rfc6455_parse_and_answer", "RFC 6455 handshake: parse Chrome request + build 101"), ("hixie76_parse_and_answer", "hixie-76 handshake: parse + MD5 answer")]:
    v = median("handshake", name)
    if v:
        rows.append((label, fmt_ns(v), f"{1e3/v*1000:.0f} k/s", ""))
print("| figure | median | rate | reference |")
print("|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
PY
