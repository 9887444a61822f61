"""Local runtime: a step runs as the same command in its component's virtualenv (no cluster).

With `DATAPIPE_RUNTIME=local` each containerised step becomes a `LocalStepOperator`: the command
from steps.toml, `.local/venvs/<venv>/bin` first on PATH, working directory = the component's
`local_dir`, plus the same non-secret environment the pod gets. Credentials come from the Airflow
process's own environment (the libpq PG* variables and ALPHAVANTAGE_*). The process is built by
`datapipe_dags.steps.local_run`, exactly as `scripts/run-step` builds it for `make pipeline`.
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
from datapipe_dags.steps import LocalRun, Step, local_run


class StepFailed(AirflowException):
    """A local step exited non-zero."""


class LocalStepOperator(BaseOperator):
    """Run one steps.toml command in its component's local virtualenv, streaming its output."""

    ui_color = "#e8f4ea"
    # the environment is rendered per run (pods.RUN_ENV: DATAPIPE_RUN_ID = the run id)
    template_fields: Sequence[str] = ("plain_env",)

    def __init__(self, *, step: Step, repo_root: Path, venvs_dir: Path, plain_env: dict[str, str],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.repo_root = repo_root
        self.venvs_dir = venvs_dir
        self.plain_env = dict(plain_env)
        self._proc: subprocess.Popen[str] | None = None

    def local_run(self) -> LocalRun:
        """The step as `make pipeline` runs it; the worker's environment stands in for the pod's Secrets."""
        return local_run(self.step, repo_root=self.repo_root, venvs_dir=self.venvs_dir, base_env=os.environ,
                         plain_env=self.plain_env)

    @property
    def command(self) -> list[str]:
        return list(self.step.command)

    def execute(self, context: Any) -> None:
        run = self.local_run()
        name, exe = self.step.name, Path(run.argv[0])
        if not exe.exists():
            raise StepFailed(f"step {name}: {exe} not found; create the virtualenvs with `make venvs`")
        if not run.cwd.is_dir():
            raise StepFailed(f"step {name}: working directory {run.cwd} does not exist")
        self.log.info("running %s in %s [%s]", " ".join(self.step.command), run.cwd, run.venv_dir)
        started = time.monotonic()
        self._proc = subprocess.Popen(
            list(run.argv), cwd=run.cwd, env=run.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1, start_new_session=True,
        )
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.log.info("%s", line.rstrip("\n"))
        rc = self._proc.wait()
        elapsed = time.monotonic() - started
        if rc != 0:
            raise StepFailed(f"step {name} ({' '.join(self.step.command)}) exited with code {rc} after {elapsed:.1f}s")
        self.log.info("step %s succeeded in %.1fs", name, elapsed)

    def on_kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)


def local_step_kwargs(settings: Settings, step: Step) -> dict[str, Any]:
    return {
        "step": step,
        "repo_root": settings.repo_root,
        "venvs_dir": settings.venvs_dir,
        "plain_env": plain_env(settings, step.component, pod=False),
    }
