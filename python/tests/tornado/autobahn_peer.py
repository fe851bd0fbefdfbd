"""The Python faces as Autobahn|Testsuite peers (run by scripts/autobahn.sh).

    autobahn_peer.py server --port N
        a plain Tornado application with polysocket.tornado's
        WebSocketHandler echoing every message, permessage-deflate on
        (for `wstest -m fuzzingclient`)
    autobahn_peer.py client tornado|polysocket URL AGENT
        polysocket.tornado.websocket_connect or polysocket.connect against
        `wstest -m fuzzingserver` at URL: every case, echoing each message
        the way an application would (read it, write it back)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import tornado.web

import polysocket
from polysocket import tornado as drop_in

MAX = 64 * 1024 * 1024


class Echo(drop_in.WebSocketHandler):
    def get_compression_options(self) -> dict:
        return {}

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message, binary=isinstance(message, bytes))


async def serve(port: int) -> None:
    app = tornado.web.Application([("/", Echo)], websocket_max_message_size=MAX)
    app.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


async def tornado_case(url: str) -> str | bytes | None:
    try:
        conn = await drop_in.websocket_connect(
            url, compression_options={}, max_message_size=MAX
        )
    except Exception as e:  # noqa: BLE001 - a refused case is the report's business
        print(f"{url}: {e!r}", file=sys.stderr)
        return None
    first = None
    while (message := await conn.read_message()) is not None:
        first = message if first is None else first
        try:
            await conn.write_message(message, binary=isinstance(message, bytes))
        except drop_in.WebSocketClosedError:
            pass
    return first


async def polysocket_case(url: str) -> str | bytes | None:
    try:
        ws = await polysocket.connect(url, max_message_size=MAX)
    except Exception as e:  # noqa: BLE001 - as above
        print(f"{url}: {e!r}", file=sys.stderr)
        return None
    first = None
    async for message in ws:
        first = message if first is None else first
        try:
            await ws.send(message)
        except polysocket.ConnectionClosed:
            pass
    await ws.close()
    return first


async def run_cases(impl: str, base: str, agent: str) -> int:
    case = tornado_case if impl == "tornado" else polysocket_case
    count = int(await case(f"{base}/getCaseCount") or 0)
    if not count:
        print(f"no case count from {base}", file=sys.stderr)
        return 2
    for i in range(1, count + 1):
        await case(f"{base}/runCase?case={i}&agent={agent}")
    await case(f"{base}/updateReports?agent={agent}")
    print(f"{count} cases run")
    return 0


def main() -> int:
    logging.basicConfig(level=logging.CRITICAL)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, required=True)
    c = sub.add_parser("client")
    c.add_argument("impl", choices=["tornado", "polysocket"])
    c.add_argument("url")
    c.add_argument("agent")
    args = parser.parse_args()
    if args.mode == "server":
        asyncio.run(serve(args.port))
        return 0
    return asyncio.run(run_cases(args.impl, args.url.rstrip("/"), args.agent))


if __name__ == "__main__":
    sys.exit(main())
