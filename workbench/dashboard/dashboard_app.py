"""The app `server.serve` runs for `python -m workbench dashboard`: one live Dashboard per browser session.

Bokeh, Panel, Tabulator and plotly.js are served by the Panel server itself (nothing from a CDN),
so the dashboard works on a machine without internet. `?run=ID` in the address opens that run's page.
"""

import panel as pn

from workbench.dashboard import Dashboard, quiet_closed_websockets

pn.extension("plotly", "tabulator")
quiet_closed_websockets()  # a reload mid-update is no error
dashboard = Dashboard(file_urls=True)
run = pn.state.session_args.get("run")
if run and run[0].isdigit():
    dashboard.open_run(int(run[0]))
dashboard.view().servable(title="workbench runs")
