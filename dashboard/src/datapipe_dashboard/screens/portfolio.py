"""Page script: see datapipe_dashboard.views.portfolio."""

from datapipe_dashboard.ui import render
from datapipe_dashboard.views.portfolio import page

render(page)
