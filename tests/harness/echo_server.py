#!/usr/bin/env python3
"""Start, watch and stop the echo server under test (standard library only).

The server command is one template, taken from the environment variable
POLYSOCKET_ECHO_CMD, with ``{port}`` where the port goes; it runs from the
repository root. Without the variable the harness builds and runs the
tokio echo example:

    target/release/examples/echo --host 127.0.0.1 --port {port}

e.g. for the engine's blocking example instead:

    POLYSOCKET_ECHO_CMD='target/release/examples/echo_blocking --host 127.0.0.1 --port {port}'

The server gets a free port on 127.0.0.1 and its own process group; the
harness waits until the port accepts connections (or the process exits) and
at the end signals that process group, by the id of the process it started.

Used by tests/conftest.py (class EchoServer) and by the shell scripts:

    echo_server.py [--log FILE] -- COMMAND [ARGS...]

starts the server, runs COMMAND with ECHO_PORT and ECHO_URL (ws://127.0.0.1:PORT)
in its environment, stops the server and exits with COMMAND's status (or 3 if
the server could not be started, 4 if it died while COMMAND ran).
"""

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV_VAR = "POLYSOCKET_ECHO_CMD"
DEFAULT_BINARY = "target/release/examples/echo"
DEFAULT_CMD = DEFAULT_BINARY + " --host 127.0.0.1 --port {port}"
BUILD_CMD = ["cargo", "build", "--release", "-q", "-p", "polysocket", "--features", "runtime", "--example", "echo"]
# A command that compiles first (cargo run) may take minutes before it listens.
START_TIMEOUT = float(os.environ.get("POLYSOCKET_ECHO_START_TIMEOUT", "600"))


class ServerError(RuntimeError):
    pass


def cargo_env():
    env = dict(os.environ)
    cargo_bin = os.path.join(os.path.expanduser("~"), ".cargo", "bin")
    if shutil.which("cargo") is None and os.path.isdir(cargo_bin):
        env["PATH"] = cargo_bin + os.pathsep + env.get("PATH", "")
    return env


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port, timeout=0.5):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class EchoServer:
    """One echo server process on 127.0.0.1, started from the template."""

    def __init__(self, template=None, log_path=None):
        self.template = template or os.environ.get(ENV_VAR) or DEFAULT_CMD
        if "{port}" not in self.template:
            raise ServerError("%s must contain {port}: %r" % (ENV_VAR, self.template))
        self.default = self.template == DEFAULT_CMD
        self.log_path = log_path or os.path.join(REPO, "target", "interop", "echo-server.log")
        self.proc = None
        self.port = None

    @property
    def url(self):
        return "ws://127.0.0.1:%d" % self.port

    def build(self):
        """Build the default server (a no-op for cargo when it is fresh)."""
        if not self.default:
            return
        r = subprocess.run(BUILD_CMD, cwd=REPO, env=cargo_env())
        if r.returncode != 0:
            raise ServerError("building the echo server failed: %s" % " ".join(BUILD_CMD))

    def start(self, attempts=3):
        self.build()
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        last = None
        for _ in range(attempts):
            port = free_port()
            try:
                self._start_on(port)
                return self
            except ServerError as e:  # e.g. the port was taken in between
                last = e
        raise last

    def _start_on(self, port):
        argv = shlex.split(self.template.replace("{port}", str(port)))
        log = open(self.log_path, "ab")
        log.write(("== %s: %s\n" % (time.strftime("%H:%M:%S"), " ".join(argv))).encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(
                argv, cwd=REPO, env=cargo_env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            raise ServerError("cannot start %r: %s" % (argv, e))
        finally:
            log.close()
        self.port = port
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise ServerError("echo server exited with %s before listening on %d; log:\n%s"
                                  % (code, port, self.log_tail()))
            if accepts(port):
                return
            time.sleep(0.05)
        self.stop()
        raise ServerError("echo server did not listen on %d within %.0fs" % (port, START_TIMEOUT))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """Stop the process group of the server started here. Returns the
        exit status if the server had already exited on its own, else None."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        early = proc.poll()
        if early is None:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # Children left in the group (e.g. under `cargo run`).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return early

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()[-16384:]
        except OSError:
            return "(no log)"
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv):
    log_path = None
    if argv[:1] == ["--log"] and len(argv) >= 2:
        log_path, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    server = EchoServer(log_path=log_path)

    def on_signal(signum, _frame):
        server.stop()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.start()
    except ServerError as e:
        print("echo_server: %s" % e, file=sys.stderr)
        return 3
    print("echo_server: %s (pid %d): %s" % (server.url, server.proc.pid, server.template),
          file=sys.stderr)
    try:
        env = dict(os.environ, ECHO_PORT=str(server.port), ECHO_URL=server.url)
        rc = subprocess.call(argv, env=env)
    finally:
        died = server.stop()
    if died is not None:
        print("echo_server: the server died (status %s) while the command ran; log:\n%s"
              % (died, server.log_tail()), file=sys.stderr)
        return rc or 4
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
