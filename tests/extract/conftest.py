"""Fixtures of the extract suite; the helpers live in extract_testlib.py (importable by the test
modules without clashing with the shared tests/conftest.py, whose fixtures they use as before).

- `sandbox`: the base URL of one sandbox API for the test module, on the pinned calendar
  (AS_OF); tests re-steer it through POST /_sandbox/faults (`extract_testlib.set_faults`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from extract_testlib import AS_OF


@pytest.fixture(scope="module")
def sandbox(module_sandbox_server: Callable[..., Any]) -> str:
    """One sandbox for the module, re-steered per test through POST /_sandbox/faults."""
    return str(module_sandbox_server("--as-of", AS_OF).base_url)
