"""Exceptions and exits in application callbacks: the exception is logged
with its message and trace, its client gets 1011, the server goes on; a
binary message for an application without onBinaryData gets 1003; exit()
or a fatal error in a callback closes every client with 1001 and ends the
script."""

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def test_exception_is_logged_client_gets_1011_server_goes_on(apps):
    with connect(apps.url + "/echo") as bystander, connect(apps.url + "/boom") as ws:
        ws.send("fine")
        assert ws.recv() == "fine"
        ws.send("boom")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1011
        bystander.send("unaffected")
        assert bystander.recv() == "unaffected"
    with connect(apps.url + "/boom") as ws:
        ws.send("again")
        assert ws.recv() == "again"
    out = apps.output()
    assert "[error] BoomApp::onData() threw RuntimeException: kaboom from boom" in out, out
    assert "Stack trace:" in out and "BoomApp->explode('boom')" in out, out


def test_binary_without_onbinarydata_is_1003(apps):
    with connect(apps.url + "/boom") as ws:
        ws.send(b"\x01\x02")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1003


def test_exit_in_a_callback_closes_everyone_and_ends_the_script(apps):
    with connect(apps.url + "/echo") as other, connect(apps.url + "/boom") as ws:
        ws.send("exit")
        with pytest.raises(ConnectionClosed):
            other.recv(timeout=10)
        assert other.close_code == 1001
        assert apps.proc.wait(10) == 7
    assert "run() returned" not in apps.output()


def test_fatal_error_in_a_callback_closes_everyone(apps):
    with connect(apps.url + "/echo") as other, connect(apps.url + "/boom") as ws:
        ws.send("fatal")
        with pytest.raises(ConnectionClosed):
            other.recv(timeout=10)
        assert other.close_code == 1001
        assert apps.proc.wait(10) == 255
    out = apps.output()
    assert "Fatal error: fatal from a callback" in out, out
    assert "run() returned" not in out
