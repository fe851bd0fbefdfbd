"""``python -m polysocket {echo,chat} [--host H] [--port P] [options]``
(``--version``: the workspace's version, compiled into the extension)

``--processes N`` starts N servers on one port (``SO_REUSEPORT``: the kernel
spreads new connections among them), each a child process of this one;
with ``--cluster redis://... --namespace NS`` they share broadcasts, groups
and presence through Redis. SIGINT or SIGTERM stops every child gracefully.
With ``--tls-cert``/``--tls-key``, SIGHUP reloads the certificate (passed on
to every child); a broken file is logged and the old certificate kept.
"""

import argparse
import logging
import signal
import subprocess
import sys
from typing import List, Optional

from . import __version__
from .demo import chat, echo

DEMOS = {"echo": (echo, 9001), "chat": (chat, 9002)}


def _children(argv: List[str], n: int) -> int:
    """Run ``n`` copies of this command (``--processes 1``, sharing the
    port) until SIGINT/SIGTERM, then stop each by PID and wait for all."""
    rest = list(argv)
    i = rest.index("--processes") if "--processes" in rest else -1
    if i >= 0:
        del rest[i:i + 2]
    rest = [a for a in rest if not a.startswith("--processes=")]
    cmd = [sys.executable, "-m", "polysocket", *rest, "--processes", "1", "--reuse-port"]
    procs = [subprocess.Popen(cmd) for _ in range(n)]
    stopping = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    def reload(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, reload)
    status = 0
    for p in procs:
        while True:
            try:
                rc = p.wait()
                break
            except KeyboardInterrupt:
                continue
        if rc not in (0, -signal.SIGTERM) and not stopping:
            # One server failed (port in use, bad option): stop the others.
            print("polysocket: process %d exited with %d" % (p.pid, rc), file=sys.stderr)
            stop(signal.SIGTERM, None)
        status = status or (rc if rc > 0 else 0)
    return status


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m polysocket",
                                description="Run a demo server (Ctrl-C stops it gracefully).")
    p.add_argument("--version", action="version", version="polysocket " + __version__)
    p.add_argument("demo", choices=sorted(DEMOS))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--tls-cert", help="PEM certificate chain (serves wss://)")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--workers", type=int, default=0,
                   help="runtime threads (0: none, I/O on the asyncio loop's thread)")
    p.add_argument("--max-connections", type=int, default=0)
    p.add_argument("--max-connections-per-ip", type=int, default=0, metavar="N",
                   help="connections at once from one client address (0: no limit)")
    p.add_argument("--trusted-proxy", action="append", default=[], metavar="CIDR",
                   help="believe this proxy's X-Forwarded-For / Forwarded headers or PROXY "
                        "header about the client's address (repeatable)")
    p.add_argument("--proxy-protocol", action="store_true",
                   help="every connection starts with a PROXY protocol header (v1 or v2) "
                        "from a --trusted-proxy")
    p.add_argument("--drain-timeout", type=float, metavar="SECONDS",
                   help="on SIGTERM, close the listening socket and serve the open "
                        "connections this long before closing them with 1001 (rolling restarts)")
    p.add_argument("--metrics", action="store_true",
                   help="answer GET /metrics (Prometheus text format) on the server's port")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve GET /metrics on this port instead")
    p.add_argument("--no-compression", action="store_true")
    p.add_argument("--no-http2", action="store_true",
                   help="with TLS, offer HTTP/1.1 only by ALPN (default: h2 first, "
                        "WebSockets as HTTP/2 streams, RFC 8441)")
    p.add_argument("--http2-max-streams", type=int, metavar="N",
                   help="streams one HTTP/2 connection may have open at once (default 100)")
    p.add_argument("--http2-max-pending-resets", type=int, metavar="N",
                   help="streams an HTTP/2 client may reset before the server took them up; "
                        "past it the connection is closed with GOAWAY(ENHANCE_YOUR_CALM) "
                        "(rapid reset, CVE-2023-44487; default 20)")
    p.add_argument("--max-buffered-total", type=int, metavar="BYTES",
                   help="bytes all connections may hold for their clients; past it the "
                        "connection asking for more is closed with 1013 (default 256 MiB, 0: none)")
    p.add_argument("--processes", type=int, default=1,
                   help="server processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--reuse-port", action="store_true",
                   help="let other processes bind the same port (SO_REUSEPORT)")
    p.add_argument("--cluster", metavar="URL",
                   help="share broadcasts with other servers over Redis (redis://host:port)")
    p.add_argument("--namespace", default="chat", help="the cluster's namespace (default: chat)")
    args = p.parse_args(argv)
    if args.processes < 1:
        p.error("--processes must be at least 1")
    module, default_port = DEMOS[args.demo]
    port = default_port if args.port is None else args.port
    if args.processes > 1:
        if port == 0:
            p.error("--processes needs a fixed --port")
        return _children(argv, args.processes)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    scheme = "wss" if args.tls_cert else "ws"
    print("%s server on %s://%s:%d" % (args.demo, scheme, args.host, port), flush=True)
    options = {"cluster": args.cluster, "namespace": args.namespace} if args.cluster else {}
    if args.trusted_proxy:
        options["trusted_proxies"] = args.trusted_proxy
    if args.proxy_protocol:
        options["proxy_protocol"] = True
    if args.metrics:
        options["metrics"] = True
    if args.no_http2:
        options["http2"] = False
    # Flags named as the options they set, passed on only when given.
    for name in ("max_buffered_total", "drain_timeout", "http2_max_streams",
                 "http2_max_pending_resets", "metrics_port"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    try:
        module.main(args.host, port, ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key,
                    workers=args.workers, max_connections=args.max_connections,
                    max_connections_per_ip=args.max_connections_per_ip,
                    compression=not args.no_compression, reuse_port=args.reuse_port, **options)
    except (ValueError, TypeError, OSError) as e:
        print("polysocket: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
