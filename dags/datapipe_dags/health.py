"""Import errors of the deployment's DAG files, read from Airflow's REST API and alerted once each.

A DAG file that does not import (a bad DATAPIPE_* value, a missing dbt manifest, a broken
dependency) has no task to fail: nothing alerts and its schedule silently stops. The
`datapipe_health` DAG runs `check_import_errors` every few minutes:

1. it reads the import errors the dag processor recorded, through the API server
   (`GET /api/v2/importErrors`, with a token from `POST /auth/token`), as the Airflow connection
   `DATAPIPE_AIRFLOW_API_CONN_ID` (default `airflow_api`: login and password of a user allowed to read
   import errors, the `viewer` role is enough; host = the API server's URL, by default the one the
   workers use, `[core] execution_api_server_url`);
2. it alerts once per distinct error (notify: email and Slack, the format of every alert). An error
   is its bundle, its file and its exception line (the traceback's last line): a new exception in
   the same file alerts again, the same one does not, however often the file is re-parsed;
3. it remembers the errors it alerted in the Airflow Variable `datapipe_health_import_errors`,
   keeping only those still present: an error that went away and comes back alerts again.

Standard library, Airflow and `datapipe_dags.notify` only: nothing here can fail to import because
of the pipeline's configuration or its dependencies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from datapipe_dags.channels import Channels
from datapipe_dags.notify import AlertMessage, compose, deliver, field, first_line

DEFAULT_API_CONN_ID = "airflow_api"
STATE_VARIABLE = "datapipe_health_import_errors"
TRACEBACK_LINES = 12
PAGE_SIZE = 100
HTTP_TIMEOUT_S = 30

log = logging.getLogger(__name__)


class HealthCheckError(RuntimeError):
    """The import errors could not be read (the check is blind): the task fails and alerts."""


@dataclass(frozen=True)
class DagImportError:
    bundle_name: str
    filename: str
    timestamp: str
    stack_trace: str

    @property
    def error(self) -> str:
        """The exception line: the traceback's last non-empty line."""
        lines = [line for line in self.stack_trace.strip().splitlines() if line.strip()]
        return lines[-1].strip() if lines else "(no stack trace)"

    @property
    def key(self) -> str:
        return f"{self.bundle_name}/{self.filename}"

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.key}\n{self.error}".encode()).hexdigest()[:16]


def workers_api_url() -> str | None:
    """The API server this deployment's workers already talk to: `[core] execution_api_server_url`
    without its `/execution/` (Airflow's default derives it from `[api] base_url`)."""
    from airflow.configuration import conf

    url = conf.get("core", "execution_api_server_url", fallback=None)
    if url:
        return str(url).rstrip("/").removesuffix("/execution")
    base = conf.get("api", "base_url", fallback=None)
    return str(base).rstrip("/") if base else None


def api_base_url(conn: Any, default: str | None = None) -> str:
    """The API server's URL from an Airflow connection: host with its scheme (`http://api:8080`), or
    host + port with the scheme in `schema` (as the HTTP provider reads it); without a host, `default`
    (the API server of the workers, `workers_api_url`)."""
    host = str(conn.host or "").strip().rstrip("/") or (default or "").rstrip("/")
    if not host:
        raise HealthCheckError(f"connection {conn.conn_id!r} has no host and Airflow has no execution API URL:"
                               " set the host to the API server's URL")
    if "://" not in host:
        scheme = conn.schema if conn.schema in ("http", "https") else "http"
        host = f"{scheme}://{host}"
    if not host.startswith(("http://", "https://")):
        raise HealthCheckError(f"connection {conn.conn_id!r}: the API server's URL must be http:// or https://")
    if conn.port and host.count(":") < 2:
        host = f"{host}:{conn.port}"
    return host


def _request(url: str, *, data: dict[str, str] | None = None, token: str | None = None) -> Any:
    headers = {"Accept": "application/json"}
    body = None
    if data is not None:
        body = json.dumps(data).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    # the URL is http(s) only: api_base_url refuses any other scheme
    req = urllib.request.Request(url, data=body, headers=headers,  # noqa: S310
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:  # noqa: S310
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        raise HealthCheckError(
            f"{req.get_method()} {url} answered HTTP {exc.code}: {first_line(str(exc.reason))}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise HealthCheckError(
            f"{req.get_method()} {url} failed: {type(exc).__name__}: {first_line(str(exc))}") from None


def fetch_import_errors(base_url: str, login: str | None, password: str | None) -> list[DagImportError]:
    """Every import error the API server knows, all pages."""
    token = None
    if login:
        answer = _request(f"{base_url}/auth/token", data={"username": login, "password": password or ""})
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not token:
            raise HealthCheckError(f"POST {base_url}/auth/token returned no access_token")
    errors: list[DagImportError] = []
    while True:
        query = urlencode({"limit": PAGE_SIZE, "offset": len(errors), "order_by": "id"})
        page = _request(f"{base_url}/api/v2/importErrors?{query}", token=token)
        items = page.get("import_errors", []) if isinstance(page, dict) else []
        errors += [DagImportError(bundle_name=str(e.get("bundle_name") or ""), filename=str(e.get("filename") or ""),
                                  timestamp=str(e.get("timestamp") or ""), stack_trace=str(e.get("stack_trace") or ""))
                   for e in items]
        if not items or len(errors) >= int(page.get("total_entries", 0)):
            return errors


def import_error_message(err: DagImportError, base_url: str) -> AlertMessage:
    """The alert of one import error: file, bundle, since when, the exception and the traceback's end."""
    tail = [line.rstrip() for line in err.stack_trace.rstrip().splitlines()][-TRACEBACK_LINES:]
    lines = [
        field("File", err.filename),
        field("Bundle", err.bundle_name),
        field("Since", err.timestamp),
        field("Error", first_line(err.error)),
        field("Effect", "the file's DAGs are not scheduled until it imports again"),
        field("Errors page", f"{base_url.rstrip('/')}/dags (Dag Import Errors)"),
        "",
        f"Traceback (last {len(tail)} lines):",
        *(f"  {line}" for line in tail),
    ]
    return compose("dag_import_error", "DAG import error", err.key, err.filename, "", lines)


def to_alert(current: Sequence[DagImportError], alerted: Mapping[str, str]) -> list[DagImportError]:
    """The errors not alerted yet: a file without an alerted error, or with a different one."""
    return [e for e in current if alerted.get(e.key) != e.fingerprint]


def check_import_errors(channels: Channels, problems: Sequence[str], api_conn_id: str,
                        context: Any) -> dict[str, Any]:
    """The health task: read the import errors, alert the new ones, remember what was alerted."""
    from airflow.sdk import BaseHook, Variable

    for problem in problems:  # the pipeline DAG refuses these; here the valid channels still work
        log.warning("alert configuration: %s", problem)
    try:
        conn = BaseHook.get_connection(api_conn_id)
    except Exception as exc:
        raise HealthCheckError(
            f"Airflow connection {api_conn_id!r} (DATAPIPE_AIRFLOW_API_CONN_ID) is missing: it must name the API"
            f" server and a user allowed to read import errors ({type(exc).__name__})") from None
    base_url = api_base_url(conn, workers_api_url())
    current = fetch_import_errors(base_url, conn.login, conn.password)
    try:
        alerted: dict[str, str] = dict(json.loads(Variable.get(STATE_VARIABLE, default="{}") or "{}"))
    except (TypeError, ValueError):
        alerted = {}
    new = to_alert(current, alerted)
    log.info("%d import error(s), %d not alerted yet: %s", len(current), len(new),
             ", ".join(f"{e.key}: {e.error}" for e in current) or "none")
    remembered = {e.key: alerted[e.key] for e in current if e.key in alerted}
    sent = []
    for err in new:
        if not channels.enabled:
            log.warning("alerts are not configured (DATAPIPE_ALERT_EMAIL_TO / DATAPIPE_SLACK_CONN_ID): %s: %s",
                        err.key, err.error)
            continue
        msg = import_error_message(err, channels.airflow_base_url)
        failures = deliver(msg, channels, context, log)
        if len(failures) < (bool(channels.email_to) + bool(channels.slack_conn_id)):
            remembered[err.key] = err.fingerprint  # reached someone: never again for this error
            sent.append(err.key)
    if remembered != alerted:
        Variable.set(STATE_VARIABLE, json.dumps(remembered, sort_keys=True))
    return {"import_errors": [e.key for e in current], "alerted": sent}
