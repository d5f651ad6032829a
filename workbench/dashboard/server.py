"""Serving the dashboard: `python -m workbench dashboard`, on loopback by default.

The port is checked before anything starts (1-65535, or 0: 5006 if free, else any), and the
"dashboard: http://..." line is printed only once the server's socket is bound, so a port in use
is one line and exit status 2, never an address that does not answer. Bokeh, Panel, Tabulator and
plotly.js are served by this server itself (nothing from a CDN).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from ..errors import WorkbenchError
from ..runs import store as default_store
from .runpage import FILE_ROUTES

APP = Path(__file__).with_name("dashboard_app.py")  # served at /dashboard_app


def quiet_closed_websockets() -> None:
    """Drop the one error a reload causes: a browser tab that reloads or closes while an update is on
    its way leaves tornado a write that fails with WebSocketClosedError, which asyncio prints as "Task
    exception was never retrieved" with two tracebacks. Nothing is wrong and nothing can be done;
    every other error is reported as before. Called by the app, inside the server's event loop."""
    import asyncio

    from tornado.iostream import StreamClosedError
    from tornado.websocket import WebSocketClosedError

    loop = asyncio.get_event_loop()
    previous = loop.get_exception_handler()
    if getattr(previous, "quiet_closed_websockets", False):
        return

    def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        if isinstance(context.get("exception"), (WebSocketClosedError, StreamClosedError)):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler.quiet_closed_websockets = True
    loop.set_exception_handler(handler)


def free_port(address: str = "127.0.0.1", preferred: int = 5006) -> int:
    """`preferred` if nothing listens there, else a port the system picks."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind((address, port))
                return probe.getsockname()[1]
            except OSError:
                continue
    raise OSError(f"no free port on {address}")


def _is_loopback(address: str) -> bool:
    """Whether `address` only reaches this machine; a name that does not resolve is a one-line error."""
    import ipaddress

    try:
        infos = socket.getaddrinfo(address, None)
    except (socket.gaierror, UnicodeError):
        raise WorkbenchError(f"cannot bind the dashboard to {address!r}: not an address or host name of this machine "
                             "(use 127.0.0.1, the default, or 0.0.0.0 for every interface)") from None
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def _network_access(address: str, port: int, token: str | None, allow_origins: list[str]) -> tuple[list, tuple]:
    """Origins, and (token, cookie secret), for a dashboard reachable from other machines.

    Off loopback anyone who can reach the port could read the store (paths, run names, notebooks),
    so a login token is required (Panel's basic auth: any user name, the token as password; the
    notebooks and artifacts routes sit behind it too) and websocket connections are accepted only
    from the origins named: this host's names, or those given with --allow-origin. Never "*".
    """
    import secrets

    token = token or os.environ.get("WORKBENCH_DASHBOARD_TOKEN") or secrets.token_urlsafe(12)
    own_names = [socket.gethostname(), socket.getfqdn()]
    hosts = allow_origins or ([] if address in ("0.0.0.0", "::") else [address]) + own_names
    origins = list(dict.fromkeys(host if ":" in host else f"{host}:{port}" for host in hosts))
    print(f"dashboard open to the network on {address}:{port}: log in with any user name and the token {token}; "
          f"browsers are accepted from {', '.join(origins)} only (add others with --allow-origin HOST[:PORT])",
          flush=True)
    return origins, (token, secrets.token_hex(32))


def check_port(port: int, address: str) -> int:
    """`port` if this process may serve on it (0: a free one); a one-line `WorkbenchError` if it is out
    of range or something else listens there already."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise WorkbenchError(f"--port {port}: a port is a number from 1 to 65535 (or 0: 5006 if free, else any)")
    if port == 0:
        return free_port(address)
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tornado binds: a port in TIME_WAIT is free
        try:
            probe.bind((address, port))
        except PermissionError:
            raise WorkbenchError(f"--port {port}: this user may not bind ports below 1024; "
                                 "choose another port (or leave --port out)") from None
        except OSError as error:
            raise WorkbenchError(f"--port {port} on {address} is in use ({error.strerror}): choose another port "
                                 "(or leave --port out)") from None
    return port


def serve(port: int = 0, address: str = "127.0.0.1", show: bool = False, token: str | None = None,
          allow_origins: list[str] | None = None) -> int:
    """Serve `dashboard_app.py` at /dashboard_app until Ctrl-C.

    On loopback (the default) it is open to this machine only; on any other address it needs a
    token and explicit origins (see `_network_access`).
    """
    from panel.io.server import get_server

    loopback = _is_loopback(address)
    port = check_port(port, address)
    origins, access = [f"{address}:{port}", f"localhost:{port}"], {}
    if not loopback:
        origins, (token, secret) = _network_access(address, port, token, allow_origins or [])
        access = {"basic_auth": token, "cookie_secret": secret}
    home = default_store().path.parent
    for route in FILE_ROUTES:  # the run page links to executed notebooks and their HTML copies here
        (home / route).mkdir(parents=True, exist_ok=True)
    try:
        server = get_server({"dashboard_app": str(APP)}, port=port, address=address, websocket_origin=origins,
                            show=False, start=False, static_dirs={r: str(home / r) for r in FILE_ROUTES},
                            title="workbench runs", **access)
    except OSError as error:  # taken between the check and the bind
        raise WorkbenchError(f"--port {port} on {address} is in use ({error.strerror}): choose another port") from None
    print(f"dashboard: http://{address}:{port}/dashboard_app  (store {default_store().path}; Ctrl-C stops it)",
          flush=True)
    server.start()
    if show:
        server.io_loop.add_callback(server.show, "/dashboard_app")
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
