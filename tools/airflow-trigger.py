#!/usr/bin/env python3
"""Start one DAG run through the Airflow 3 REST API and wait for its end (exit 0 only on success).

    tools/airflow-trigger.py --url http://127.0.0.1:8080 --dag market_data_daily \
        --username admin --password-file FILE [--timeout 3600]

The password file is the simple auth manager's JSON (`{"admin": "..."}`, the chart's
`<release>-airflow-admin` Secret) or a plain password. Steps: get a JWT (POST /auth/token), wait
until the DAG has been parsed, unpause it, POST a run, poll its state, and on failure list the
task instances that did not succeed. Stdlib only; never prints the password or the token.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TERMINAL = {"success", "failed"}


class AirflowError(RuntimeError):
    """The API refused or failed a request; the message says which."""


class Client:
    def __init__(self, url: str, token: str | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise AirflowError(f"--url must be an http(s) URL, got {url!r}")
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)  # noqa: S310 - http(s) only
        request.add_header("Content-Type", "application/json")
        request.add_header("Accept", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - http(s) only
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise AirflowError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        return json.loads(payload) if payload else None


def read_password(path: Path, username: str) -> str:
    text = path.read_text().strip()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return text
    if isinstance(parsed, dict):
        if username not in parsed:
            raise AirflowError(f"{path} has no password for user {username!r}")
        return str(parsed[username])
    return text


def wait_for(what: str, check: Any, timeout_s: float, interval_s: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (AirflowError, OSError) as exc:
            last_error = str(exc)
        time.sleep(interval_s)
    raise AirflowError(
        f"timed out after {timeout_s:.0f}s waiting for {what}" + (f" (last error: {last_error})" if last_error else "")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--dag", default="market_data_daily")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run to end")
    parser.add_argument("--parse-timeout", type=float, default=600.0, help="seconds to wait for the DAG to be parsed")
    args = parser.parse_args(argv)
    try:
        password = read_password(args.password_file, args.username)
        anonymous = Client(args.url)
        wait_for("the api-server", lambda: anonymous.call("GET", "/api/v2/monitor/health"), 300)
        token = anonymous.call("POST", "/auth/token", {"username": args.username, "password": password})["access_token"]
        api = Client(args.url, token)
        dag = f"/api/v2/dags/{args.dag}"
        wait_for(f"DAG {args.dag} to be parsed", lambda: api.call("GET", dag), args.parse_timeout)
        api.call("PATCH", dag, {"is_paused": False})
        run = api.call("POST", f"{dag}/dagRuns", {"logical_date": None, "conf": {}})
        run_id = run["dag_run_id"]
        print(f"triggered {args.dag} run {run_id}", flush=True)
        started = time.monotonic()
        state = run.get("state")
        last = None
        while time.monotonic() - started < args.timeout:
            state = api.call("GET", f"{dag}/dagRuns/{run_id}")["state"]
            if state != last:
                print(f"  {time.monotonic() - started:6.0f}s  {state}", flush=True)
                last = state
            if state in TERMINAL:
                break
            time.sleep(10)
        else:
            raise AirflowError(f"run {run_id} still {state} after {args.timeout:.0f}s")
        if state != "success":
            tis = api.call("GET", f"{dag}/dagRuns/{run_id}/taskInstances")
            for ti in tis.get("task_instances", []):
                if ti.get("state") != "success":
                    print(f"  task {ti['task_id']}: {ti.get('state')} (try {ti.get('try_number')})", file=sys.stderr)
            print(f"run {run_id} ended {state}", file=sys.stderr)
            return 1
        print(f"run {run_id} succeeded in {time.monotonic() - started:.0f}s")
        return 0
    except (AirflowError, OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
