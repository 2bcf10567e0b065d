"""``plowline dashboard``: the analytics reports as web pages (docs/dashboard.md).

Server-rendered HTML (Starlette and Jinja2 with autoescaping), charts drawn as
inline SVG on the server, no JavaScript and nothing loaded from another host.
The figures come from :func:`plowline.analytics.run_report`, the function
behind ``plowline report``, so both always agree.
"""

from plowline.dashboard.app import build_app
from plowline.dashboard.data import DashboardSource

__all__ = ["DashboardSource", "build_app"]
