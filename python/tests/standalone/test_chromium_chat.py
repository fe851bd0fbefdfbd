"""Headless Chromium (Debian's /usr/bin/chromium) in the chat example: the
page is served by the standalone server itself (GET /), its script joins the
room and answers a Python client's message through the server's broadcast.

POLYSOCKET_SKIP_BROWSER=1 skips it; otherwise a missing Chromium fails."""

import asyncio
import json
import os
import sys
import threading

import pytest
import websockets

from conftest import REPO
from polysocket.demo import chat

sys.path.insert(0, os.path.join(REPO, "tests"))
from test_chromium import chromium_path, run_chromium  # noqa: E402


def test_chromium_chats_with_a_python_client(serve):
    if os.environ.get("POLYSOCKET_SKIP_BROWSER") == "1":
        pytest.skip("POLYSOCKET_SKIP_BROWSER=1")
    chromium = chromium_path()
    assert chromium, "Chromium not found (apt-get install chromium; scripts/test-python.sh does)"
    s = serve(chat.ROUTES, pages=chat.pages())
    seen = []
    done = threading.Event()

    async def python_client():
        async with websockets.connect(s.url("/chat?name=py")) as ws:
            while True:
                m = json.loads(await ws.recv())
                seen.append(m)
                if m == {"event": "join", "name": "chromium"}:
                    await ws.send("hello from python")
                if m["event"] == "message" and m["name"] == "chromium":
                    done.set()
                    return

    client = threading.Thread(target=lambda: asyncio.run(asyncio.wait_for(python_client(), 90)))
    client.start()
    try:
        exited, log = run_chromium(chromium, "http://127.0.0.1:%d/?name=chromium&autoreply=1"
                                   % s.port, done)
    finally:
        client.join(100)
    assert done.is_set(), ("no answer from the page (Chromium exit status %s); events %r; "
                           "Chromium's output:\n%s" % (exited, seen, log))
    assert seen[0] == {"event": "join", "name": "py"}
    assert {"event": "message", "name": "py", "text": "hello from python"} in seen
    assert (seen[-1]["event"], seen[-1]["name"]) == ("message", "chromium")
    assert seen[-1]["text"].startswith("got: hello from python (permessage-deflate"), seen[-1]
