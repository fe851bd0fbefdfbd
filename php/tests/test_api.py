"""The PHP API without sockets (api.php: setters, base class, phpinfo)."""

import os
import subprocess

from conftest import HERE, php_argv


def test_php_api():
    r = subprocess.run(php_argv(os.path.join(HERE, "api.php")), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "ok 56", r.stdout + r.stderr
    assert r.stderr == "", r.stderr


def test_php_ini_cluster_defaults(tmp_path):
    """polysocket.cluster_url/namespace/reuse_port configure every new server
    (so N copies of one script join a cluster by configuration alone);
    phpinfo shows them, the password hidden."""
    script = tmp_path / "ini.php"
    script.write_text(
        "<?php $s = new \\WebSocket\\Server('127.0.0.1', 0);\n"
        "echo json_encode([$s->getCluster(), $s->getReusePort()]), \"\\n\";\n"
        "phpinfo(INFO_MODULES);\n")
    r = subprocess.run(php_argv(str(script), ini=[
        "polysocket.cluster_url=redis://:secret@127.0.0.1:1/2",
        "polysocket.cluster_namespace=chat", "polysocket.reuse_port=1"]),
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[1] == (
        '[{"url":"redis:\\/\\/:secret@127.0.0.1:1\\/2","namespace":"chat","heartbeat":1,'
        '"expiry":3,"queue":65536},true]'), r.stdout
    assert "polysocket.cluster_url => redis://:***@127.0.0.1:1/2" in r.stdout
    assert "secret" not in r.stdout.split("\n", 2)[2]
