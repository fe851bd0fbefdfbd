"""Node's `ws` library (tests/node/client.js) against the echo server."""

import hashlib
import json
import os
import shutil
import subprocess

import pytest

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")


def run_client(url, *flags):
    node = shutil.which("node")
    assert node, "node is not installed (scripts/test-interop.sh installs it)"
    assert os.path.isdir(os.path.join(NODE_DIR, "node_modules", "ws")), \
        "ws is not installed: run `npm ci` in tests/node (scripts/test-interop.sh does)"
    proc = subprocess.run([node, "client.js", url, *flags], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def steps(result):
    return {s["name"]: s for s in result["steps"]}


def test_node_ws_permessage_deflate(ws_url):
    r = run_client(ws_url)
    assert "error" not in r, r.get("error")
    assert r["opened"]
    assert r["extensions"].split(";")[0].strip() == "permessage-deflate", r["extensions"]
    s = steps(r)
    assert list(s) == ["text", "binary", "empty-text", "1MiB-binary", "1MiB-text"]
    for name, step in s.items():
        assert step["equal"], "%s: echo differs (%d bytes sent, %d received)" % (
            name, step["sent_len"], step["recv_len"])
        assert step["binary"] == name.endswith("binary"), name
    assert s["1MiB-binary"]["recv_len"] == 1 << 20
    assert s["1MiB-text"]["recv_len"] >= 1 << 20  # 1 Mi UTF-16 units, some 3-byte
    assert s["text"]["sha256"] == hashlib.sha256("Hello from Node ws ✓ κόσμε".encode()).hexdigest()
    assert s["empty-text"]["recv_len"] == 0
    assert r["pong"] == "node ping"
    # The server answers with our code (RFC 6455 5.5.1; echoing the reason is optional).
    assert r["close_code"] == 1000


def test_node_ws_without_deflate(ws_url):
    r = run_client(ws_url, "--no-deflate")
    assert "error" not in r, r.get("error")
    assert r["extensions"] == ""
    assert all(step["equal"] for step in r["steps"]) and len(r["steps"]) == 5
    assert r["close_code"] == 1000
