"""`datapipe-dashboard`: serve the app with the production server settings.

    datapipe-dashboard [--address ADDR] [--port PORT]

Same as `streamlit run <package>/app.py` with: headless, no usage statistics, XSRF protection on,
no file watcher, port 8501 and address 127.0.0.1 unless given (DASHBOARD_ADDRESS / DASHBOARD_PORT,
0.0.0.0 in the container). The warehouse connection comes from the libpq variables.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

APP = Path(__file__).with_name("app.py")


def streamlit_argv(address: str, port: int) -> list[str]:
    return [
        "streamlit", "run", str(APP),
        "--server.headless=true",
        f"--server.address={address}",
        f"--server.port={port}",
        "--server.enableXsrfProtection=true",
        "--server.enableCORS=true",
        "--server.fileWatcherType=none",
        "--server.runOnSave=false",
        "--browser.gatherUsageStats=false",
        "--client.toolbarMode=minimal",
        "--client.showErrorDetails=none",
        "--logger.level=info",
        "--theme.base=light",
        "--theme.primaryColor=#1e6fd9",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="datapipe-dashboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default=os.environ.get("DASHBOARD_ADDRESS", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DASHBOARD_PORT", "8501")))
    args = parser.parse_args(argv)
    from streamlit.web import cli as st_cli

    sys.argv = streamlit_argv(args.address, args.port)
    return int(st_cli.main() or 0)


if __name__ == "__main__":
    sys.exit(main())
