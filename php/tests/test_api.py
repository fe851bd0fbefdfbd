"""The PHP API without sockets (api.php: setters, base class, phpinfo)."""

import os
import subprocess

from conftest import HERE, php_argv


def test_php_api():
    r = subprocess.run(php_argv(os.path.join(HERE, "api.php")), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "ok 30", r.stdout + r.stderr
    assert r.stderr == "", r.stderr
