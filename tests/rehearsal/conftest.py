"""Fixtures of the rehearsal suite; helpers live in rehearsaltest.py (importable by the test modules)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rehearsal_release import Release, render_release
from rehearsaltest import MANIFEST, rehearsal_values


@pytest.fixture(scope="session")
def manifest_file() -> Path:
    if not MANIFEST.is_file():
        pytest.fail(f"{MANIFEST} is missing: run `make dbt-manifest` (make rehearse does it)")
    return MANIFEST


@pytest.fixture(scope="session")
def unit_release(tmp_path_factory: pytest.TempPathFactory, manifest_file: Path) -> Release:
    """The release of the rehearsal's values, rendered for tests that run no container."""
    return render_release(rehearsal_values("unit"), tmp_path_factory.mktemp("helm-unit"))
