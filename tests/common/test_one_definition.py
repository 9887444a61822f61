"""What the components must agree on is defined once, in datapipe_common.

The scan reads every Python module of the repository (components, scripts, tools, benchmarks,
tests) and lists those that define a calendar, a symbol rule, a map from libpq variables to
connection keywords, or an env-file parser. Only datapipe_common may appear. The detectors are
themselves tested on the kinds of code they must catch, so the scan cannot pass by being blind.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from datapipe_common.marts import DBT_VAR_MAX_CHANGED_FRACTION, INDICATOR_COLUMNS, MAX_CHANGED_FRACTION

ROOT = Path(__file__).resolve().parents[2]
COMMON = ROOT / "common" / "src" / "datapipe_common"
# names of calendar definitions (functions and constants), as the hand-written calendars had them
CALENDAR_NAMES = {"easter", "easter_sunday", "holidays", "nyse_holidays", "special_closures", "is_trading_day",
                  "trading_days", "previous_trading_day", "next_trading_day", "last_completed_trading_day",
                  "last_completed_session", "expected_latest_trade_date", "trading_days_behind"}
PG_NAMES = ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSSLMODE")
SYMBOL_NAMES = ("DEFAULT_SYMBOLS", "SYMBOL_RE", "_SYMBOL", "parse_symbols", "_symbols")


def _const(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_weekday_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "weekday"


def concepts(source: str) -> set[str]:
    """The shared concepts a module defines (not: uses)."""
    found: set[str] = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name.lower() in CALENDAR_NAMES:
                found.add("calendar")
            if node.name in SYMBOL_NAMES:
                found.add("symbol rule")
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                name = target.id if isinstance(target, ast.Name) else ""
                if name in SYMBOL_NAMES:
                    found.add("symbol rule")
                if name.lower() in ("special_closures", "holidays", "early_closes"):
                    found.add("calendar")
        elif isinstance(node, ast.Compare) and _is_weekday_call(node.left) and any(
                isinstance(c, ast.Constant) and c.value in (4, 5) for c in node.comparators):
            found.add("calendar")  # a weekend rule: day.weekday() < 5
        elif isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(m.split(".")[0] == "exchange_calendars" for m in modules):
                found.add("calendar")
        elif isinstance(node, ast.Dict):
            # {"PGHOST": "host", ...}: libpq variable -> connection keyword
            pairs = {_const(k): _const(v) for k, v in zip(node.keys, node.values, strict=True) if k is not None}
            if pairs.get("PGHOST") == "host" or pairs.get("PGSSLMODE") == "sslmode":
                found.add("libpq map")
        elif isinstance(node, ast.Tuple | ast.List | ast.Set):
            names = {_const(e) for e in node.elts}
            if len(names & set(PG_NAMES)) >= 4:
                found.add("libpq map")
        elif isinstance(node, ast.Call):
            # psycopg.connect(host=env["PGHOST"], ...): the map written as keywords
            for keyword in node.keywords:
                value = keyword.value
                if (keyword.arg in ("host", "dbname", "user") and isinstance(value, ast.Subscript)
                        and _const(value.slice) in PG_NAMES):
                    found.add("libpq map")
            # line.startswith("export ") / removeprefix("export "): parsing an env file
            func = node.func
            if (isinstance(func, ast.Attribute) and func.attr in ("startswith", "removeprefix", "partition")
                    and any(_const(a) == "export " for a in node.args)):
                found.add("env-file parser")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "[A-Z0-9]" in node.value:
            found.add("symbol rule")  # a ticker regex
    return found


def python_modules() -> list[Path]:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    out = []
    for name in files:
        path = ROOT / name
        if not path.is_file() or name.startswith(".local/"):
            continue
        if path.suffix == ".py" or (path.parent.name == "scripts" and path.read_text(errors="ignore")
                                    .startswith("#!/usr/bin/env python")):
            out.append(path)
    return out


def test_the_detectors_catch_each_kind_of_copy() -> None:
    samples = {
        "calendar": "def easter(year):\n    pass\n",
        "calendar ": "ok = day.weekday() < 5\n",
        "symbol rule": 'import re\nPATTERN = re.compile(r"^[A-Z0-9][A-Z0-9.-]{0,19}$")\n',
        "libpq map": 'KEYS = {"PGHOST": "host", "PGPORT": "port"}\n',
        "env-file parser": 'def f(line):\n    return line.startswith("export ")\n',
    }
    for concept, sample in samples.items():
        assert concepts(sample) == {concept.strip()}, concept
    assert concepts('psycopg.connect(host=env["PGHOST"], user=env["PGUSER"])\n') == {"libpq map"}
    assert concepts("import exchange_calendars\n") == {"calendar"}
    assert concepts('env = {"PGHOST": "127.0.0.1"}\nfrom datapipe_common.calendar import nyse\n') == set()


def test_only_datapipe_common_defines_the_shared_concepts() -> None:
    modules = python_modules()
    assert len(modules) > 50 and any(p.is_relative_to(COMMON) for p in modules)
    definers: dict[str, list[str]] = {}
    for path in modules:
        if path.is_relative_to(Path(__file__).parent):
            continue  # these tests, with their samples of what the scan must catch
        for concept in concepts(path.read_text()):
            definers.setdefault(concept, []).append(str(path.relative_to(ROOT)))
    outside = {c: [m for m in mods if not m.startswith("common/")] for c, mods in definers.items()}
    assert {c: m for c, m in outside.items() if m} == {}
    # and datapipe_common does define each of them
    assert {c for c, mods in definers.items() if any(m.startswith("common/") for m in mods)} == {
        "calendar", "symbol rule", "libpq map", "env-file parser"}


def test_dbt_reads_the_shared_threshold_and_defines_the_shared_indicator_columns() -> None:
    project = yaml.safe_load((ROOT / "dbt" / "dbt_project.yml").read_text())
    assert project["vars"][DBT_VAR_MAX_CHANGED_FRACTION] == MAX_CHANGED_FRACTION
    assert DBT_VAR_MAX_CHANGED_FRACTION in (ROOT / "dbt" / "macros" / "test_scope.sql").read_text()
    models = yaml.safe_load((ROOT / "dbt" / "models" / "marts" / "_marts__models.yml").read_text())["models"]
    indicators = next(m for m in models if m["name"] == "fct_technical_indicators")
    columns = [c["name"] for c in indicators["columns"] if c["name"] not in ("symbol", "trade_date")]
    assert tuple(columns) == INDICATOR_COLUMNS


def test_dbt_tracks_the_shared_default_symbols() -> None:
    """dbt reads DATAPIPE_SYMBOLS (the marts cover the tracked symbols); unset, its default is the
    shared DEFAULT_SYMBOLS, through the var the tracked-symbols model reads."""
    from datapipe_common.symbols import DEFAULT_SYMBOLS

    project = yaml.safe_load((ROOT / "dbt" / "dbt_project.yml").read_text())
    assert tuple(project["vars"]["datapipe_default_symbols"].split(",")) == DEFAULT_SYMBOLS
    model = (ROOT / "dbt" / "macros" / "tracked_symbols.sql").read_text()
    assert "env_var('DATAPIPE_SYMBOLS'" in model and "datapipe_default_symbols" in model


@pytest.mark.parametrize("module", ["config", "symbols", "libpq", "marts"])
def test_stdlib_only_modules_import_without_a_virtualenv(module: str) -> None:
    """scripts/ run them with the system Python: nothing outside the standard library."""
    probe = (f"import sys; sys.path.insert(0, {str(COMMON.parent)!r}); import datapipe_common.{module}; "
             "print(sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] in "
             "('exchange_calendars', 'pandas', 'numpy', 'psycopg')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
