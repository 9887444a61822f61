"""Local runtime: a step runs as the same command in its component's virtualenv (no cluster).

With `DATAPIPE_RUNTIME=local` each containerised step becomes a `LocalStepOperator`: the command
from steps.toml, `.local/venvs/<venv>/bin` first on PATH, working directory = the component's
`local_dir`, plus the same non-secret environment the pod gets. Credentials come from the Airflow
process's own environment (the libpq PG* variables and ALPHAVANTAGE_*), exactly as
`scripts/run-step` does for `make pipeline`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from datapipe_dags.config import Settings
from datapipe_dags.pods import plain_env
from datapipe_dags.steps import Step


class StepFailed(AirflowException):
    """A local step exited non-zero."""


class LocalStepOperator(BaseOperator):
    """Run one steps.toml command in its component's local virtualenv, streaming its output."""

    ui_color = "#e8f4ea"
    template_fields: Sequence[str] = ()

    def __init__(self, *, step_name: str, command: Sequence[str], cwd: str, venv_dir: str,
                 step_env: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step_name = step_name
        self.command = list(command)
        self.cwd = cwd
        self.venv_dir = venv_dir
        self.step_env = dict(step_env)
        self._proc: subprocess.Popen[str] | None = None

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)  # the worker's environment, as a pod would get from its Secrets
        env.update(self.step_env)
        venv_bin = str(Path(self.venv_dir) / "bin")
        env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = self.venv_dir
        env.pop("PYTHONHOME", None)
        return env

    def execute(self, context: Any) -> None:
        exe = Path(self.venv_dir) / "bin" / self.command[0]
        if not exe.exists():
            raise StepFailed(
                f"step {self.step_name}: {exe} not found; create the virtualenvs with `make venvs`"
            )
        if not Path(self.cwd).is_dir():
            raise StepFailed(f"step {self.step_name}: working directory {self.cwd} does not exist")
        self.log.info("running %s in %s [%s]", " ".join(self.command), self.cwd, self.venv_dir)
        started = time.monotonic()
        self._proc = subprocess.Popen(
            [str(exe), *self.command[1:]], cwd=self.cwd, env=self.child_env(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True,
        )
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.log.info("%s", line.rstrip("\n"))
        rc = self._proc.wait()
        elapsed = time.monotonic() - started
        if rc != 0:
            raise StepFailed(
                f"step {self.step_name} ({' '.join(self.command)}) exited with code {rc} after {elapsed:.1f}s"
            )
        self.log.info("step %s succeeded in %.1fs", self.step_name, elapsed)

    def on_kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)


def local_step_kwargs(settings: Settings, step: Step) -> dict[str, Any]:
    component = step.component
    return {
        "step_name": step.name,
        "command": step.command,
        "cwd": str(settings.repo_root / component.local_dir),
        "venv_dir": str(settings.venvs_dir / component.venv),
        "step_env": plain_env(settings, component, pod=False),
    }
