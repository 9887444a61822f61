"""Page script: see datapipe_dashboard.views.market."""

from datapipe_dashboard.ui import render
from datapipe_dashboard.views.market import page

render(page)
