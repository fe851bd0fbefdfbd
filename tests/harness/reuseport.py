"""The kernel setting a rolling restart on one port relies on
(docs/OPERATIONS.md): with ``net.ipv4.tcp_migrate_req=1`` a connection
that the kernel completed for a closing ``SO_REUSEPORT`` listener moves to
another listener of the port instead of being reset."""

import contextlib

SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req"


@contextlib.contextmanager
def migrate_requests():
    """Sets the setting for the test's duration, as the operations guide
    tells operators to, and puts the old value back. Where it cannot be
    written (not root, kernel < 5.14) the test runs without it: the server
    still takes what was queued before closing, so only a handshake that
    completes in the instant of the close can be reset."""
    try:
        with open(SYSCTL) as f:
            before = f.read().strip()
        with open(SYSCTL, "w") as f:
            f.write("1")
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        with open(SYSCTL, "w") as f:
            f.write(before)
