"""A dashboard bound off loopback needs a token and accepts websockets only from named origins;
on loopback it stays open to this machine, as before."""

import http.cookiejar
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

from workbench.dashboard import free_port

TOKEN = "s3cret-token-for-the-test"
TRAVERSALS = [
    "/notebooks/../runs.db", "/notebooks/..%2fruns.db", "/notebooks/%2e%2e/runs.db", "/notebooks/%2e%2e%2fruns.db",
    "/artifacts/../../../../etc/passwd", "/artifacts/..%2f..%2f..%2f..%2fetc%2fpasswd", "/notebooks//etc/passwd",
    "/notebooks/%2fetc%2fpasswd", "/static/../runs.db", "/notebooks/....//runs.db", "/artifacts/%252e%252e/runs.db",
    "/notebooks/..\\runs.db",
]


def websocket_status(url: str, origin: str, cookie: str = "") -> int:
    """The HTTP status the server answers a websocket handshake with (101: accepted)."""
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.ioloop import IOLoop
    from tornado.websocket import websocket_connect

    async def connect() -> int:
        request = HTTPRequest(url, headers={"Origin": origin, "Cookie": cookie})
        try:
            connection = await websocket_connect(request)
        except HTTPClientError as error:
            return error.code
        connection.close()
        return 101

    return IOLoop.current().run_sync(connect, timeout=60)


@pytest.mark.slow
def test_off_loopback_needs_the_token_and_a_named_origin(start_server, tmp_path):
    port = free_port("0.0.0.0")
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path), "WORKBENCH_DASHBOARD_TOKEN": TOKEN}
    command = [sys.executable, "-m", "workbench", "dashboard", "--address", "0.0.0.0", "--port", str(port),
               "--allow-origin", f"127.0.0.1:{port}"]
    base = f"http://127.0.0.1:{port}"
    server, first_page = start_server(command, f"{base}/dashboard_app", env, "the dashboard")
    try:
        assert "runs.db" not in first_page and "password" in first_page.lower()  # a login form, not the document
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        wrong = opener.open(f"{base}/login", urllib.parse.urlencode({"username": "me", "password": "guess"}).encode())
        assert "runs.db" not in wrong.read().decode() and not any(c.name == "user" for c in jar)
        page = opener.open(f"{base}/login", urllib.parse.urlencode({"username": "me", "password": TOKEN}).encode())
        assert page.status == 200 and "dashboard_app" in page.url and any(c.name == "user" for c in jar)
        cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
        (tmp_path / "notebooks").mkdir(exist_ok=True)
        (tmp_path / "notebooks" / "kept.html").write_text("an executed notebook")
        assert opener.open(f"{base}/notebooks/kept.html").read() == b"an executed notebook"
        for escape in TRAVERSALS:  # logged in, still nothing outside the served folders
            try:
                body = opener.open(f"{base}{escape}").read()
            except urllib.error.HTTPError as error:
                assert error.code in (400, 403, 404), escape
            else:
                assert b"SQLite format" not in body and b"root:" not in body, escape
        websocket = f"ws://127.0.0.1:{port}/dashboard_app/ws"
        assert websocket_status(websocket, "http://evil.example", cookie) == 403
        assert websocket_status(websocket, "http://evil.example") in (401, 403)
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert f"the token {TOKEN}" in out and f"accepted from 127.0.0.1:{port} only" in out


def test_an_address_that_is_not_one_is_a_one_line_error(capsys):
    from workbench.cli import main

    assert main(["dashboard", "--address", "no-such-host.invalid"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot bind the dashboard to 'no-such-host.invalid'" in err


def test_loopback_needs_no_token():
    from workbench.dashboard import server

    assert server._is_loopback("127.0.0.1") and server._is_loopback("localhost")
    assert not server._is_loopback("0.0.0.0")


@pytest.mark.parametrize("port", ["99999", "-5", "65536"])
def test_a_port_out_of_range_is_one_line_before_anything_starts(port, capsys):
    from workbench.cli import main

    assert main(["dashboard", "--port", port]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and f"--port {port}: a port is a number from 1 to 65535" in err
    assert "dashboard: http" not in out  # nothing claims to serve


def test_a_port_in_use_is_one_line_and_never_announced(capsys):
    import socket

    from workbench.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["dashboard", "--port", str(port)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and f"--port {port} on 127.0.0.1 is in use" in err
    assert "dashboard: http" not in out
