"""``python -m polysocket {echo,chat} [--host H] [--port P] [options]``"""

import argparse
import logging
import sys

from .demo import chat, echo

DEMOS = {"echo": (echo, 9001), "chat": (chat, 9002)}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m polysocket",
                                description="Run a demo server (Ctrl-C stops it gracefully).")
    p.add_argument("demo", choices=sorted(DEMOS))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--tls-cert", help="PEM certificate chain (serves wss://)")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--workers", type=int, default=0,
                   help="runtime threads (0: none, I/O on the asyncio loop's thread)")
    p.add_argument("--max-connections", type=int, default=0)
    p.add_argument("--no-compression", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    module, default_port = DEMOS[args.demo]
    port = default_port if args.port is None else args.port
    scheme = "wss" if args.tls_cert else "ws"
    print("%s server on %s://%s:%d" % (args.demo, scheme, args.host, port), flush=True)
    try:
        module.main(args.host, port, ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key,
                    workers=args.workers, max_connections=args.max_connections,
                    compression=not args.no_compression)
    except (ValueError, TypeError, OSError) as e:
        print("polysocket: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
