"""The warehouse connection: libpq's standard variables, the one configuration every component reads.

psycopg and psql read the variables themselves; code that builds a connection string or URL (the
dashboard's read-only session, Great Expectations' SQLAlchemy URL) maps them with
`LIBPQ_KEYWORDS`. `PGSSLROOTCERT` (a CA file, or `system` for the OS store) verifies the server
with `PGSSLMODE=verify-ca|verify-full`.

Stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping

from datapipe_common.config import ConfigError

# libpq variable -> connection keyword (https://www.postgresql.org/docs/current/libpq-envars.html)
LIBPQ_KEYWORDS = {
    "PGHOST": "host",
    "PGPORT": "port",
    "PGDATABASE": "dbname",
    "PGUSER": "user",
    "PGPASSWORD": "password",
    "PGSSLMODE": "sslmode",
    "PGSSLROOTCERT": "sslrootcert",
}
LIBPQ_VARIABLES = tuple(LIBPQ_KEYWORDS)
# The variables of a role's connection Secret; the TLS settings are plain, non-secret environment.
CONNECTION_VARIABLES = ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def check_sslmode(name: str, value: str) -> str:
    if value not in SSL_MODES:
        raise ConfigError(f"{name}={value!r} is not a libpq sslmode: use one of {', '.join(SSL_MODES)}")
    return value


def libpq_env(env: Mapping[str, str]) -> dict[str, str]:
    """The libpq variables set (non-blank) in `env`, checked: a port must be a number, an sslmode
    one of libpq's."""
    out = {name: env[name].strip() for name in LIBPQ_VARIABLES if env.get(name, "").strip()}
    if "PGPASSWORD" in out:
        out["PGPASSWORD"] = env["PGPASSWORD"]  # a password keeps its spaces
    port = out.get("PGPORT")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"PGPORT={port!r} is not a TCP port number")
    if "PGSSLMODE" in out:
        check_sslmode("PGSSLMODE", out["PGSSLMODE"])
    return out


def connection_keywords(pg_env: Mapping[str, str]) -> dict[str, str]:
    """libpq variables -> connection keywords (`{"PGHOST": "db"}` -> `{"host": "db"}`)."""
    return {LIBPQ_KEYWORDS[name]: value for name, value in pg_env.items() if name in LIBPQ_KEYWORDS and value}


def _quote(value: str) -> str:
    if value and not any(c.isspace() or c in "'\\=" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def conninfo(pg_env: Mapping[str, str], **extra: str) -> str:
    """A libpq keyword/value connection string from the variables, plus `extra` keywords
    (`application_name`, `options`, ...). Contains the password: never log it."""
    keywords = {**connection_keywords(pg_env), **extra}
    return " ".join(f"{key}={_quote(value)}" for key, value in keywords.items())


def describe(pg_env: Mapping[str, str]) -> str:
    """`user@host:port/database` for messages; never the password."""
    return (f"{pg_env.get('PGUSER', '?')}@{pg_env.get('PGHOST', 'localhost')}:"
            f"{pg_env.get('PGPORT', '5432')}/{pg_env.get('PGDATABASE', '?')}")
