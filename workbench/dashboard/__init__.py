"""The live comparison dashboard of the run store (`python -m workbench dashboard`).

    app.py         the layout: filters, the runs table, the tabs; every change goes through `state`
    state.py       the one source of truth (filter, ticks, baseline) and the snapshot every view draws
    query.py       the filter expression box, parsed safely (never eval)
    views.py       shared conventions as plain functions: parameters vs metrics, goals, rounding, tables
    curves.py  compare.py  sweeps.py  runpage.py  frontier.py     one module per tab
    widgets.py     small Panel pieces: tables, CSV buttons, artifact panes
    server.py      serving: the port checked first, "dashboard: http://..." printed once bound
    dashboard_app.py   the app the server runs, one Dashboard per browser session
"""

from .app import Dashboard
from .server import free_port, quiet_closed_websockets, serve
from .state import StoreFeed

__all__ = ["Dashboard", "StoreFeed", "free_port", "quiet_closed_websockets", "serve"]
