"""Page script: see datapipe_dashboard.views.quality."""

from datapipe_dashboard.ui import render
from datapipe_dashboard.views.quality import page

render(page)
