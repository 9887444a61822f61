"""Page script: see datapipe_dashboard.views.symbol."""

from datapipe_dashboard.ui import render
from datapipe_dashboard.views.symbol import page

render(page)
