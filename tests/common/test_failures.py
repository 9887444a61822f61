"""datapipe_common.failures and .masking on real errors: psycopg, SQLAlchemy wrapping psycopg2 (what
Great Expectations raises), Great Expectations' own, files; one line each, the right exit code."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest
from datapipe_common import failures
from datapipe_common.config import ConfigError
from datapipe_common.masking import mask_text

CLOSED = "host=127.0.0.1 port=1 user=nobody dbname=nothing connect_timeout=3"


def raised(fn) -> BaseException:  # type: ignore[no-untyped-def]
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


def test_an_unreachable_warehouse_is_exit_3_with_advice() -> None:
    exc = raised(lambda: psycopg.connect(CLOSED))
    failure = failures.explain(exc)
    assert failure.exit_code == failures.EXIT_WAREHOUSE and failures.is_connection_lost(exc)
    assert failure.line().startswith('warehouse unreachable or lost: connection failed: connection to server at'
                                     ' "127.0.0.1", port 1 failed: Connection refused ->')
    assert "\n" not in failure.line()


def test_sqlalchemy_wrapping_psycopg2_is_recognised_through_the_chain() -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine("postgresql+psycopg2://nobody:pw-secret@127.0.0.1:1/nothing")

    def connect_inside_gx() -> None:
        try:
            engine.connect()
        except Exception as exc:
            raise RuntimeError("GX could not get a batch") from exc

    exc = raised(connect_inside_gx)
    assert failures.kind_of(exc) == failures.WAREHOUSE and failures.is_connection_lost(exc)
    assert failures.explain(exc).what.startswith("warehouse unreachable or lost:")


def test_a_missing_privilege_is_exit_4(tmp_path: Path) -> None:
    class InsufficientPrivilege(Exception):  # psycopg.errors.InsufficientPrivilege needs a server
        sqlstate = "42501"

    InsufficientPrivilege.__module__ = "psycopg.errors"
    failure = failures.explain(InsufficientPrivilege("permission denied for database warehouse\nDETAIL: x"),
                               hints={failures.PERMISSION: "use the writer role"})
    assert failure.exit_code == failures.EXIT_PERMISSION
    assert failure.line() == "warehouse refused: permission denied for database warehouse -> use the writer role"


def test_files_great_expectations_config_and_bugs(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    not_dir = raised(lambda: (blocker / "docs").mkdir(parents=True))
    assert failures.explain(not_dir).exit_code == failures.EXIT_TOOL
    assert failures.explain(not_dir).what.startswith("file error: [Errno 20] Not a directory:")
    gx_exceptions = pytest.importorskip("great_expectations.exceptions")
    gx = raised(lambda: (_ for _ in ()).throw(gx_exceptions.GreatExpectationsError("suite broke")))
    assert failures.kind_of(gx) == failures.GX and failures.explain(gx).exit_code == failures.EXIT_TOOL
    assert failures.explain(ConfigError("X='y' is not an integer")).exit_code == failures.EXIT_CONFIG
    bug = failures.explain(ZeroDivisionError("division by zero"))
    assert bug.exit_code == failures.EXIT_BUG and "--debug" in bug.do


def test_run_cli_one_line_or_the_traceback_with_debug(tmp_path: Path) -> None:
    script = tmp_path / "cli.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        import psycopg
        from datapipe_common.failures import run_cli
        sys.exit(run_cli("demo", lambda: psycopg.connect({CLOSED!r}) and 0, debug="--debug" in sys.argv,
                         mask=lambda t: t.replace("nobody", "***")))
    """))
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    debug = subprocess.run([sys.executable, str(script), "--debug"], capture_output=True, text=True, timeout=60)
    assert plain.returncode == debug.returncode == 3
    assert len(plain.stderr.strip().splitlines()) == 1 and plain.stderr.startswith("demo: warehouse unreachable")
    assert "Traceback" in debug.stderr and debug.stderr.strip().splitlines()[-1] == plain.stderr.strip()


def test_mask_text_hides_userinfo_secret_parameters_and_known_secrets() -> None:
    text = ("GET https://me:pw%21x@api.example/q?function=F&token=t0k&apikey=K3Y&monkey=1 failed for key"
            " ABCDEFGH; password=hunter22, api_key=zz")
    assert mask_text(text, ["ABCDEFGH", "ab"]) == (
        "GET https://***@api.example/q?function=F&token=***&apikey=***&monkey=1 failed for key *** ;"
        " password=***, api_key=***").replace(" ;", ";")


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # what alert messages carry (datapipe_dags.notify.redact is mask_text): labels in prose and DSNs
        ("Token: xoxb-123-456 refused", "Token: *** refused"),
        ("connect: password = s3cr3t host=db", "connect: password = *** host=db"),
        ("secret:abc, pwd=x", "secret:***, pwd=***"),
        ("could not connect to postgresql://pipeline:hunter2pw@db:5432/warehouse",
         "could not connect to postgresql://***@db:5432/warehouse"),
        # a hand-written DSN's password may hold `?` or `#`; a value goes on past `#`, `<`, `>`
        ("postgresql://u:pa?ss#1@db/w", "postgresql://***@db/w"),
        ("password=ab#cd<e> next", "password=*** next"),
        # `key` is a secret as a parameter only: after a colon it is prose (the extractor's messages)
        ("the API refused the key: Thank you for using Alpha Vantage", None),
        ("GET /q?key=K3Y&x=1", "GET /q?key=***&x=1"),
        # no credentials, nothing changes
        ("https://h/q?email=a@b.example", None),
        ("duplicate key value violates unique constraint; Key (symbol)=(IBM) already exists", None),
    ],
)
def test_mask_text_hides_secret_labels_in_prose(text: str, masked: str | None) -> None:
    assert mask_text(text) == (text if masked is None else masked)
