"""The Python face of the soak run (scripts/soak.sh): the standalone server
with an app that echoes every message and answers the soak client's
commands, as core/examples/soak_server.rs does (see there for the
commands).

    python tests/harness/soak_server.py --port P [--max-send-buffer BYTES] [--workers N]

`soak:stats` reports what only the process itself can see:
`len(gc.get_objects())`, `sys.getallocatedblocks()` and the open handlers.
"""

import argparse
import gc
import json
import sys

import polysocket


class Soak(polysocket.WebSocketHandler):
    def check_origin(self, origin):
        return True

    def open(self):
        group = self.get_argument("group", None)
        if group:
            self.join(group)

    def on_message(self, message):
        if isinstance(message, str) and message.startswith("soak:"):
            self.command(message[5:])
        else:
            self.write_message(message, binary=isinstance(message, bytes))

    def command(self, command):
        words = command.split(" ", 2)
        if words[0] == "stats":
            stats = {"connections": len(self.application.handlers), "py_objects": len(gc.get_objects()),
                     "py_blocks": sys.getallocatedblocks()}
            self.write_message("soak:stats " + json.dumps(stats))
        elif words[0] == "bcast" and len(words) == 3:
            self.broadcast_group(words[1], "soak:b %s %s" % (words[1], words[2]))
        elif words[0] == "flood" and len(words) == 3:
            message = "f" * int(words[2])
            try:
                for _ in range(int(words[1])):
                    self.write_message(message)
            except polysocket.WebSocketClosedError:
                pass  # cut off: what the soak client waits for
        else:
            self.close(1003, "unknown soak command")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--max-send-buffer", type=int, default=64 * 1024 * 1024)
    p.add_argument("--workers", type=int, default=0)
    a = p.parse_args()
    polysocket.serve([(r"/.*", Soak)], a.host, a.port, max_send_buffer=a.max_send_buffer, workers=a.workers)


if __name__ == "__main__":
    main()
