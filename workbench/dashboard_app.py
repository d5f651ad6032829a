"""The app `panel serve` runs for `python -m workbench dashboard`: one live Dashboard per browser session.

Bokeh, Panel, Tabulator and plotly.js are served by the Panel server itself (nothing from a CDN),
so the dashboard works on a machine without internet.
"""

import panel as pn

from workbench.dashboard import Dashboard

pn.extension("plotly", "tabulator")
Dashboard().view().servable(title="workbench runs")
