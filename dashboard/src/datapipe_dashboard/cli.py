"""`datapipe-dashboard`: serve the app with the production server settings.

    datapipe-dashboard [--address ADDR] [--port PORT] [--debug]

Same as `streamlit run <package>/app.py` with: headless, no usage statistics, XSRF protection on,
no file watcher, uploads refused above 1 MB by the server itself, port 8501 and address 127.0.0.1
unless given (DASHBOARD_ADDRESS / DASHBOARD_PORT, 0.0.0.0 in the container). These flags are the
one place the app's Streamlit configuration is set (the image and the chart run this command; flags
win over STREAMLIT_* variables and config.toml files). The warehouse connection comes from the libpq
variables.

Before the server starts, the settings are read once: a bad setting (DASHBOARD_PORT, DASHBOARD_NOW,
PGPORT, ...) stops start-up with one line naming it and exit code 2; any other start-up error is
one line too (docs/common.md, "Exit codes"); `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from datapipe_common import failures
from datapipe_common.config import env_int

from datapipe_dashboard.holdings import MAX_UPLOAD_MB

APP = Path(__file__).with_name("app.py")


def streamlit_argv(address: str, port: int) -> list[str]:
    return [
        "streamlit", "run", str(APP),
        "--server.headless=true",
        f"--server.address={address}",
        f"--server.port={port}",
        "--server.enableXsrfProtection=true",
        "--server.enableCORS=true",
        f"--server.maxUploadSize={MAX_UPLOAD_MB}",
        "--server.fileWatcherType=none",
        "--server.runOnSave=false",
        "--browser.gatherUsageStats=false",
        "--client.toolbarMode=minimal",
        "--client.showErrorDetails=none",
        "--logger.level=info",
        "--theme.base=light",
        "--theme.primaryColor=#1e6fd9",
    ]


def preload() -> None:
    """Do before the server listens what the first page view would otherwise pay: import the pages'
    libraries (pandas' Styler with jinja2, pyarrow that Streamlit serializes frames and chart data
    with) and build each kind of chart once. The page scripts run in this
    process, so they find everything in sys.modules."""
    from datetime import date, timedelta

    import pandas as pd
    import pyarrow as pa
    from datapipe_common.calendar import nyse
    from datapipe_common.marts import INDICATOR_COLUMNS
    from pandas.io.formats.style import Styler  # noqa: F401

    from datapipe_dashboard import charts, holdings, queries  # noqa: F401

    nyse()  # exchange_calendars builds the NYSE sessions once per process (about a second)

    days = [date(2026, 1, 5) + timedelta(days=i) for i in range(3)]
    frame = pd.DataFrame({"trade_date": days, **{c: [1.0, 2.0, 3.0] for c in (
        "open", "high", "low", "close", "volume", *INDICATOR_COLUMNS)}})
    charts.symbol_chart(frame, "X", [*charts.OVERLAYS, charts.BOLLINGER])
    charts.value_chart(pd.Series([1.0, 2.0, 3.0], index=pd.to_datetime(days)), 1.0)
    charts.allocation_chart(pd.DataFrame({"symbol": ["X"], "sector": ["S"], "market_value": [1.0]}))
    pa.ipc.new_stream(pa.BufferOutputStream(), pa.Table.from_pandas(frame).schema).close()
    frame.style.map(lambda _: "")._compute()


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="datapipe-dashboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default=None, help="listen address (default DASHBOARD_ADDRESS or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="TCP port (default DASHBOARD_PORT or 8501)")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of a start-up error (default: one line saying what to do)")
    args = parser.parse_args(argv)
    env = os.environ if env is None else env

    def start() -> int:
        from datapipe_dashboard.settings import Settings

        Settings.from_env(env)  # the app reads them again per process; a bad one stops start-up here
        address = args.address or env.get("DASHBOARD_ADDRESS", "").strip() or "127.0.0.1"
        port = args.port if args.port is not None else env_int(env, "DASHBOARD_PORT", 8501, minimum=1, maximum=65535)
        preload()
        from streamlit.web import cli as st_cli

        sys.argv = streamlit_argv(address, port)
        return int(st_cli.main() or 0)

    return failures.run_cli("datapipe-dashboard", start, debug=args.debug, hints={
        failures.CONFIG: "fix the variable (docs/dashboard.md, configuration) and start the dashboard again",
    })


if __name__ == "__main__":
    sys.exit(main())
