"""The shared test helpers (tests/conftest.py) under an unambiguous module name."""

from __future__ import annotations

import importlib.util
import re
import socket
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


def _port_is_free_like_postgres(port: int) -> bool:
    """PostgreSQL binds with SO_REUSEADDR, so a port whose old connections sit in TIME_WAIT after a
    stop is free for it; scripts/warehouse.py's check binds without it and would move the server to
    another port, stranding every client configured with the old one."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def start_warehouse(server) -> None:  # type: ignore[no-untyped-def]
    """Start the stopped session warehouse again on the same port."""
    port = server.credentials().port
    server._make_traversable()
    warehouse_module = sys.modules[type(server).__module__]
    original = warehouse_module.port_is_free
    warehouse_module.port_is_free = _port_is_free_like_postgres
    try:
        server.start()
    finally:
        warehouse_module.port_is_free = original
    assert server.credentials().port == port, "the warehouse came back on another port"


def unescaped(markdown: str) -> str:
    """What a reader of Streamlit markdown sees: the backslash escapes of punctuation removed, and
    the invisible word joiners that keep URLs and addresses from becoming links (ui.plain)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace("\u2060", "")
