"""The shared test helpers (tests/conftest.py) under an unambiguous module name."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location("datapipe_root_conftest", Path(__file__).parents[1] / "conftest.py")
assert _spec is not None and _spec.loader is not None
_root = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _root
_spec.loader.exec_module(_root)

ROOT: Path = _root.ROOT
free_port = _root.free_port
wait_http = _root.wait_http
venv_bin = _root.venv_bin


def stop_warehouse(server) -> None:  # type: ignore[no-untyped-def]
    """Stop the session warehouse (conftest.TestWarehouse.stop, given its server)."""
    _root.TestWarehouse(server, {}, {}, {}).stop()


def start_warehouse(server) -> None:  # type: ignore[no-untyped-def]
    """Start the stopped session warehouse again on the same port (conftest.TestWarehouse.start)."""
    _root.TestWarehouse(server, {}, {}, {}).start()


def unescaped(markdown: str) -> str:
    """What a reader of Streamlit markdown sees: the backslash escapes of punctuation removed, and
    the invisible word joiners that keep URLs and addresses from becoming links (ui.plain)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace("\u2060", "")
