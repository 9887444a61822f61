"""The shared test helpers (tests/conftest.py) under an unambiguous module name."""

from __future__ import annotations

import importlib.util
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
    """Stop the session warehouse. Another pytest run on this machine may have reset
    /tmp/pytest-of-<user> to 0700 meanwhile, which hides the data dir from the postgres user:
    re-open the traversal bits first (what Warehouse.init does)."""
    server._make_traversable()
    server.stop()


def start_warehouse(server) -> None:  # type: ignore[no-untyped-def]
    server._make_traversable()
    server.start()
