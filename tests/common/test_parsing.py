"""Env files, numbers, symbols and libpq settings: one implementation, the same messages everywhere."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import psycopg
import pytest
from datapipe_common.config import ConfigError, env_flag, env_float, env_int, read_env_file, write_env_file
from datapipe_common.libpq import conninfo, describe, libpq_env
from datapipe_common.symbols import DEFAULT_SYMBOLS, is_symbol, parse_symbols, symbols_from_env


def test_env_file_round_trip_through_python_and_bash(tmp_path: Path) -> None:
    env = {"PGHOST": "127.0.0.1", "PGPASSWORD": "p w'd$x\"", "EMPTY": ""}
    path = tmp_path / "warehouse.env"
    write_env_file(path, env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_env_file(path) == env
    # the Makefile `source`s these files: bash must read the same values
    shell = subprocess.run(["bash", "-c", f'source {path}; printf "%s" "$PGPASSWORD"'],
                           capture_output=True, text=True, check=True)
    assert shell.stdout == env["PGPASSWORD"]
    assert read_env_file(tmp_path / "missing.env") == {}


def test_env_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.env"
    path.write_text("# comment\nexport A=1\nnot a variable line\n")
    with pytest.raises(ConfigError, match=r"bad.env:3: expected `export NAME=value`"):
        read_env_file(path)
    path.write_text("export A='unterminated\n")
    with pytest.raises(ConfigError, match=r"bad.env:1: A has a malformed value"):
        read_env_file(path)


def test_numbers() -> None:
    env = {"N": " 7 ", "F": "0.5", "BAD": "seven", "NEG": "-1", "NAN": "nan", "B": "Yes"}
    assert env_int(env, "N", 1) == 7 and env_int(env, "UNSET", 3) == 3
    assert env_float(env, "F", 1.0, minimum=0, maximum=1) == 0.5
    assert env_flag(env, "B") is True and env_flag(env, "UNSET", default=False) is False
    with pytest.raises(ConfigError, match=r"^BAD='seven' is not an integer$"):
        env_int(env, "BAD", 1)
    with pytest.raises(ConfigError, match=r"^BAD='seven' is not a number$"):
        env_float(env, "BAD", 1.0)
    with pytest.raises(ConfigError, match=r"^NEG='-1' must be >= 0$"):
        env_int(env, "NEG", 1, minimum=0)
    with pytest.raises(ConfigError, match=r"^F='0.5' must be between 1 and 2$"):
        env_float(env, "F", 1.0, minimum=1, maximum=2)
    with pytest.raises(ConfigError, match=r"^NAN='nan' is not a finite number$"):
        env_float(env, "NAN", 1.0)


def test_symbols() -> None:
    assert parse_symbols("aapl, MSFT ,tsco.lon,brk-b,AAPL") == ("AAPL", "MSFT", "TSCO.LON", "BRK-B")
    assert symbols_from_env({}) == DEFAULT_SYMBOLS and len(DEFAULT_SYMBOLS) == 10
    assert symbols_from_env({"DATAPIPE_SYMBOLS": "ibm"}) == ("IBM",)
    assert is_symbol("V") and is_symbol("A" * 20) and not is_symbol("A" * 21)
    for bad in ("AAPL.", "-X", "A B", "ÄPFEL", "AAPL;DROP"):
        assert not is_symbol(bad.upper()), bad
    with pytest.raises(ConfigError, match=r"DATAPIPE_SYMBOLS has invalid symbols 'A B': letters and digits"):
        parse_symbols("IBM, A B")
    with pytest.raises(ConfigError, match=r"--symbols names no symbol"):
        parse_symbols(" , ", source="--symbols")


def test_libpq_settings_reach_psycopg_as_given() -> None:
    env = {"PGHOST": "db.example", "PGPORT": "6543", "PGDATABASE": "ware house", "PGUSER": "pipeline",
           "PGPASSWORD": " p'w\\d ", "PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/etc/ssl/ca.pem",
           "HOME": "/root"}
    pg = libpq_env(env)
    assert set(pg) == {"PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSSLMODE", "PGSSLROOTCERT"}
    parsed = psycopg.conninfo.conninfo_to_dict(conninfo(pg, application_name="x y"))
    assert parsed == {"host": "db.example", "port": "6543", "dbname": "ware house", "user": "pipeline",
                      "password": " p'w\\d ", "sslmode": "verify-full", "sslrootcert": "/etc/ssl/ca.pem",
                      "application_name": "x y"}
    assert describe(pg) == "pipeline@db.example:6543/ware house" and "p'w" not in describe(pg)
    with pytest.raises(ConfigError, match=r"PGSSLMODE='strict' is not a libpq sslmode"):
        libpq_env({"PGSSLMODE": "strict"})
    with pytest.raises(ConfigError, match=r"PGPORT='54x' is not a TCP port number"):
        libpq_env({"PGPORT": "54x"})
