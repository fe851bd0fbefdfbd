"""The argument-conversion fuzzer (fuzz_args.php), a short fixed-seed run:
every public method of \\WebSocket\\Server and \\WebSocket\\Connection with
random values of every PHP type returns its declared type or false, or
throws TypeError/ValueError/\\Exception; never a crash or a logged panic.

Outside a running server first, then inside one: clients connect, send
texts and binaries and vanish, and each event makes random calls on its
connection and the static Server calls. POLYSOCKET_FUZZ_SECONDS=600 keeps
clients coming for that long (seed from POLYSOCKET_FUZZ_SEED, default 1).
"""

import os
import random
import signal
import subprocess
import time

import websocket

from conftest import HERE, php_argv


def test_php_arguments_offline():
    seed = os.environ.get("POLYSOCKET_FUZZ_SEED", "1")
    r = subprocess.run(php_argv(os.path.join(HERE, "fuzz_args.php"), seed, 4000),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.splitlines()[-1].startswith("ok "), \
        r.stdout[-3000:] + r.stderr[-3000:]


def test_php_arguments_in_callbacks(tmp_path):
    seed = int(os.environ.get("POLYSOCKET_FUZZ_SEED", "1"))
    seconds = float(os.environ.get("POLYSOCKET_FUZZ_SECONDS", "20"))
    port_file = tmp_path / "port"
    php = subprocess.Popen(php_argv(os.path.join(HERE, "fuzz_args.php"), seed, 200, port_file),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 15
        while not (port_file.exists() and port_file.read_text()):
            assert php.poll() is None and time.monotonic() < deadline, php.stdout.read()
            time.sleep(0.05)
        url = f"ws://127.0.0.1:{port_file.read_text()}/fuzz"
        rng = random.Random(seed)
        sessions = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sessions += 1
            try:
                ws = websocket.create_connection(url, timeout=2)
                for _ in range(rng.randint(0, 5)):
                    if rng.random() < 0.5:
                        ws.send(rng.choice(["x", "é" * 100, "{}", "a" * 70000]))
                    else:
                        ws.send_binary(rng.randbytes(rng.randint(0, 300)))
                if rng.random() < 0.5:
                    ws.close()
                else:
                    ws.sock.close()  # vanish without a close frame
            except (websocket.WebSocketException, OSError):
                pass  # the calls may close the connection: fine
            assert php.poll() is None, php.stdout.read()[-3000:]
        php.send_signal(signal.SIGTERM)  # run() returns, the script prints "ok N"
        out, _ = php.communicate(timeout=30)
    finally:
        if php.poll() is None:
            php.kill()
            php.wait()
    assert php.returncode == 0, out[-3000:]
    assert out.splitlines()[-1].startswith("ok "), out[-3000:]
    assert "panic" not in out.lower(), out[-3000:]
    assert sessions > 10
