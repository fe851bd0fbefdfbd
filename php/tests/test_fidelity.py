"""php-websocket fidelity, found by running its own server script,
applications and pages on the extension:

- wss with an encrypted key: php-websocket's own server.pem (certificate
  and key, encrypted with the passphrase 'shinywss': as shipped, in
  OpenSSL's legacy encryption, or as its openssl_pkey_export writes it)
  serves unchanged; another encrypted key serves with its passphrase;
  without it or with a wrong one the constructor or setCertificate() throws,
  naming the cause and the command that decrypts the key, before anything
  is logged (it used to be a "base64 decode error" from run() after "Server
  created");
- certificates replaced while serving: SIGHUP or reloadCertificate() takes
  the new one up for new handshakes (serial seen by `openssl s_client`),
  open connections carry on, a broken file changes nothing;
- the status hooks get the client port as a string, as php-websocket's did
  (test_connection.py checks the status application's messages);
- a user's own copy of php-websocket's StatusApplication (and Application)
  replaces the extension's, required or autoloaded.
"""

import json
import os
import shutil
import signal
import ssl
import subprocess
import time

import pytest
from conftest import HERE, php_argv
from websockets.sync.client import connect

# php-websocket's Socket::applySSLContext: a self-signed certificate and its
# key, encrypted with php-websocket's passphrase, in one server.pem.
MAKE_SERVER_PEM = """<?php
$key = openssl_pkey_new();
$cert = openssl_csr_sign(openssl_csr_new(array('commonName' => 'foo.lh'), $key), null, $key, 1);
openssl_x509_export($cert, $pem[0]);
openssl_pkey_export($key, $pem[1], $argv[1]);
file_put_contents('server.pem', implode($pem));
"""


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def run_php(tmp_path, code, *args):
    script = tmp_path / "script.php"
    script.write_text(code)
    r = subprocess.run(php_argv(str(script), *args), cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    return r.stdout + r.stderr


def make_server_pem(tmp_path, passphrase, legacy=False):
    """php-websocket's server.pem: as its Socket class makes one, or (legacy)
    as the repository ships it: the key in OpenSSL's legacy encryption."""
    pem = tmp_path / "server.pem"
    if legacy:
        plain, key, cert = (tmp_path / ("made-%s.pem" % n) for n in ("plain", "key", "cert"))
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-subj", "/CN=foo.lh", "-keyout", str(plain), "-out", str(cert))
        openssl("rsa", "-traditional", "-des3", "-in", str(plain), "-passout",
                "pass:" + passphrase, "-out", str(key))
        pem.write_text(cert.read_text() + key.read_text())
        assert "DEK-Info: DES-EDE3-CBC," in pem.read_text()
    else:
        # PHP's openssl functions make it, as php-websocket's do: Debian's
        # `php`, which has them, whichever PHP the tests run on (the ZTS
        # build of scripts/test-php-zts.sh is built without openssl).
        script = tmp_path / "make_server_pem.php"
        script.write_text(MAKE_SERVER_PEM)
        r = subprocess.run(["php", "-n", str(script), passphrase], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "BEGIN ENCRYPTED PRIVATE KEY" in pem.read_text()
    assert "BEGIN CERTIFICATE" in pem.read_text()


@pytest.fixture
def keys(tmp_path):
    """cert.pem; its key plain, encrypted as PKCS#8 (passphrase 'secret'),
    and encrypted in OpenSSL's legacy PEM format."""
    paths = {name: str(tmp_path / (name + ".pem"))
             for name in ("cert", "plain", "encrypted", "legacy")}
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", paths["plain"], "-out", paths["cert"])
    openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", paths["plain"],
            "-passout", "pass:secret", "-out", paths["encrypted"])
    openssl("rsa", "-traditional", "-aes128", "-in", paths["plain"],
            "-passout", "pass:secret", "-out", paths["legacy"])
    with open(paths["legacy"]) as f:
        assert "Proc-Type: 4,ENCRYPTED" in f.read()
    return paths


def echo_over_wss(port, context):
    with connect("wss://127.0.0.1:%d/echo" % port, ssl=context) as ws:
        ws.send("over wss")
        return ws.recv()


@pytest.mark.parametrize("legacy", [True, False], ids=["as-shipped", "openssl_pkey_export"])
def test_php_websocket_server_pem_serves_unchanged(php_server, tmp_path, legacy):
    """new Server($host, $port, true) in a folder holding php-websocket's
    server.pem: its key is decrypted with php-websocket's passphrase."""
    make_server_pem(tmp_path, "shinywss", legacy)
    server = php_server("php/tests/servers/apps.php", "--ssl", cwd=str(tmp_path))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # php-websocket's certificate is for foo.lh
    assert echo_over_wss(server.port, context) == "over wss"


def test_encrypted_key_serves_with_its_passphrase(php_server, keys):
    server = php_server("php/tests/servers/apps.php", "--cert", keys["cert"],
                        "--key", keys["encrypted"], "--passphrase", "secret")
    context = ssl.create_default_context(cafile=keys["cert"])
    assert echo_over_wss(server.port, context) == "over wss"


# Each case names the key in one place and expects the exception there.
ATTEMPT = """<?php
$s = null;
try {
    %s
    echo "no exception\\n";
} catch (\\Exception $e) {
    echo get_class($e), ' at line ', $e->getLine(), ': ', $e->getMessage(), "\\n";
}
"""
CONSTRUCT = "$s = new \\WebSocket\\Server('127.0.0.1', 0, true, %s);"
SET = ("$s = new \\WebSocket\\Server('127.0.0.1', 0, true, array('cert' => '{cert}', "
       "'key' => '{plain}'));\n    $s->setCertificate(%s);")

ENCRYPTED = "is encrypted and no passphrase was given"
WRONG = "is encrypted and the passphrase does not decrypt it"
LEGACY_WRONG = "is encrypted (OpenSSL's legacy format) and the passphrase does not decrypt it"


@pytest.mark.parametrize("code, cause, key", [
    (CONSTRUCT % "array('cert' => '{cert}', 'key' => '{encrypted}')", ENCRYPTED, "encrypted"),
    (CONSTRUCT % "array('cert' => '{cert}', 'key' => '{encrypted}', 'passphrase' => 'nope')",
     WRONG, "encrypted"),
    (CONSTRUCT % "array('local_cert' => '{cert}', 'local_pk' => '{legacy}', "
     "'passphrase' => 'nope')", LEGACY_WRONG, "legacy"),
    (SET % "'{cert}', '{encrypted}'", ENCRYPTED, "encrypted"),
    (SET % "'{cert}', '{encrypted}', 'nope'", WRONG, "encrypted"),
    (SET % "'{cert}', '{legacy}'", ENCRYPTED, "legacy"),
    # php-websocket's server.pem, encrypted with another passphrase
    (CONSTRUCT % "array()", WRONG, "server.pem"),
    (CONSTRUCT % "array()", LEGACY_WRONG, "legacy server.pem"),
], ids=["new-no-passphrase", "new-wrong-passphrase", "new-legacy-wrong-passphrase",
        "set-no-passphrase", "set-wrong-passphrase", "set-legacy-no-passphrase",
        "server.pem-not-shinywss", "legacy-server.pem-not-shinywss"])
def test_encrypted_key_fails_where_it_is_named(tmp_path, keys, code, cause, key):
    if key.endswith("server.pem"):
        make_server_pem(tmp_path, "other", legacy=key.startswith("legacy"))
    code = code.format(**keys)
    script = ATTEMPT % code
    out = run_php(tmp_path, script)
    # the line of the statement naming the key (the case's last one)
    line = script.splitlines().index("    " + code.splitlines()[-1].strip()) + 1
    path = keys.get(key, "server.pem")
    assert out.splitlines()[-1].startswith(
        "Exception at line %d: wss: cannot use certificate" % line), out
    assert "the private key in %s %s" % (path, cause) in out, out
    assert "openssl pkey -in %s -out key.pem" % path in out, out
    assert "base64" not in out, out
    # a constructor that throws has not created a server
    assert ("Server created" in out) == ("setCertificate" in code), out


@pytest.mark.parametrize("key", ["encrypted", "legacy"])
def test_set_certificate_decrypts_with_the_passphrase(tmp_path, keys, key):
    code = (SET % ("'{cert}', '{%s}', 'secret'" % key)).format(**keys)
    out = run_php(tmp_path, ATTEMPT % code)
    assert out.endswith("no exception\n"), out


@pytest.mark.parametrize("mode", ["autoload", "require", "none"])
def test_users_status_application_replaces_the_extensions(php_server, mode):
    """The user's StatusApplication (servers/lib, php-websocket's layout)
    serves /status when the script autoloads or requires it; its base class
    is the user's when autoloaded, the extension's otherwise; without a
    user's copy the extension's runs."""
    server = php_server("php/tests/servers/user_status.php", "--mode", mode)
    lib = os.path.join(HERE, "servers", "lib", "WebSocket", "Application")
    classes = dict(line.split("] ", 1)[1].split(" from ")
                   for line in server.output().splitlines() if "[class] " in line)
    user_status = classes["WebSocket\\Application\\StatusApplication"] == \
        os.path.join(lib, "StatusApplication.php")
    user_base = classes["WebSocket\\Application\\Application"] == \
        os.path.join(lib, "Application.php")
    assert (user_status, user_base) == {"autoload": (True, True), "require": (True, False),
                                        "none": (False, False)}[mode], classes
    with connect(server.url + "/status") as status:
        first = json.loads(status.recv())
        if mode == "none":
            assert first["action"] == "serverInfo" and "maxClients" in first["data"]
            return
        assert first["data"] == {"edition": "user"}
        assert ("base" in first) == user_base
        ports = [str(status.socket.getsockname()[1])]  # its own connection first
        with connect(server.url + "/echo") as ws:
            ports.append(str(ws.socket.getsockname()[1]))
            connected = [json.loads(status.recv()) for _ in ports]
    for message, port in zip(connected, ports):
        assert message["action"] == "userConnected"
        assert message["data"] == {"port": port, "type": "string"}
    out = server.output()
    assert "Warning" not in out and "Fatal" not in out and "Deprecated" not in out, out


def test_ssl_without_any_certificate_fails_in_run(tmp_path):
    """No file named and no server.pem: nothing to load at construction
    (setCertificate() may still come), so run() says what is missing."""
    out = run_php(tmp_path, ATTEMPT % "$s = new \\WebSocket\\Server('127.0.0.1', 0, true);\n"
                  "    $s->run();")
    assert out.splitlines()[-1].startswith(
        "Exception at line 5: wss: no certificate (server.pem, php-websocket's default, was "
        "not found when the server was created): pass $options['cert'] or call "
        "setCertificate()"), out


def make_cert(tmp_path, name, serial):
    """A self-signed P-256 certificate for 127.0.0.1 with ``serial``."""
    cert, key = str(tmp_path / (name + ".crt")), str(tmp_path / (name + ".key"))
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-set_serial", str(serial), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert)
    return cert, key


def served_serial(port):
    """The serial ``openssl s_client`` is served on a new handshake."""
    hello = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    serial = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=hello.stdout,
                            capture_output=True, timeout=10)
    return serial.stdout.decode().strip().partition("=")[2]


def test_sighup_reloads_the_certificate_and_open_connections_carry_on(php_server, tmp_path):
    old, new = make_cert(tmp_path, "old", 0x71), make_cert(tmp_path, "new", 0x72)
    cert, key = str(tmp_path / "live.crt"), str(tmp_path / "live.key")
    shutil.copy(old[0], cert)
    shutil.copy(old[1], key)
    server = php_server("php/tests/servers/apps.php", "--cert", cert, "--key", key)
    assert served_serial(server.port) == "71"
    context = ssl.create_default_context(cafile=old[0])
    with connect("wss://127.0.0.1:%d/echo" % server.port, ssl=context) as ws:
        shutil.copy(new[0], cert)
        shutil.copy(new[1], key)
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        while served_serial(server.port) != "72" and time.time() < deadline:
            time.sleep(0.1)
        assert served_serial(server.port) == "72", server.output()
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"
        # A broken file: logged, the new certificate stays, the server runs.
        with open(cert, "w") as f:
            f.write("broken")
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        while "not reloaded" not in server.output() and time.time() < deadline:
            time.sleep(0.1)
        assert "[error] SIGHUP: TLS certificate not reloaded" in server.output()
        assert served_serial(server.port) == "72"
        ws.send("and here")
        assert ws.recv(timeout=5) == "and here"
    assert server.proc.poll() is None


RELOAD = """<?php
$s = new \\WebSocket\\Server('127.0.0.1', 0, true, array('cert' => '%s', 'key' => '%s'));
file_put_contents('%s', 'broken');
var_dump($s->reloadCertificate());
copy('%s', '%s');
copy('%s', '%s');
var_dump($s->reloadCertificate());
"""


def test_reload_certificate_returns_false_on_a_broken_file(tmp_path):
    old, new = make_cert(tmp_path, "old", 0x81), make_cert(tmp_path, "new", 0x82)
    out = run_php(tmp_path, RELOAD % (old[0], old[1], old[0], new[0], old[0], new[1], old[1]))
    lines = out.splitlines()
    assert "bool(false)" in lines and "bool(true)" in lines, out
    assert lines.index("bool(false)") < lines.index("bool(true)"), out
    assert "[error] TLS certificate not reloaded (the old one stays)" in out, out
    assert "old.crt" in out, out
