"""The pipeline steps, read from `steps.toml` beside this file: the one definition of each command,
and the one builder of a step's local run (command, working directory, environment).

The DAG (its pods and, with DATAPIPE_RUNTIME=local, `LocalStepOperator`) and `make pipeline`
(`scripts/run-step`) both load the file through `load_steps()` and run a step locally through
`local_run()`, so the command a pod runs, the command a local run executes and the command a
developer types cannot drift apart. Standard library only: `scripts/run-step` imports it without
the Airflow virtualenv.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

STEPS_FILE = Path(__file__).with_name("steps.toml")


class StepsError(ValueError):
    """steps.toml is malformed or names an unknown step/component."""


@dataclass(frozen=True)
class Component:
    name: str
    image: str  # image name without registry/tag; the pinned reference comes from Settings
    local_dir: str  # working directory of a local run, relative to the repository root
    venv: str  # .local/venvs/<venv>
    env: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Step:
    name: str
    component: Component
    command: tuple[str, ...]


@dataclass(frozen=True)
class Steps:
    components: MappingProxyType[str, Component]
    steps: MappingProxyType[str, Step]
    pipeline_order: tuple[str, ...]

    def __getitem__(self, name: str) -> Step:
        try:
            return self.steps[name]
        except KeyError:
            raise StepsError(f"unknown step {name!r}; steps.toml defines {sorted(self.steps)}") from None


def parse_steps(data: dict[str, Any]) -> Steps:
    components: dict[str, Component] = {}
    for name, spec in data.get("components", {}).items():
        try:
            components[name] = Component(
                name=name,
                image=str(spec["image"]),
                local_dir=str(spec["local_dir"]),
                venv=str(spec["venv"]),
                env=MappingProxyType({str(k): str(v) for k, v in spec.get("env", {}).items()}),
            )
        except KeyError as exc:
            raise StepsError(f"component {name!r} in steps.toml lacks {exc.args[0]!r}") from None
    steps: dict[str, Step] = {}
    for name, spec in data.get("steps", {}).items():
        component = spec.get("component")
        if component not in components:
            raise StepsError(f"step {name!r} names unknown component {component!r}")
        command = spec.get("command")
        if not isinstance(command, list) or not command or not all(isinstance(c, str) and c for c in command):
            raise StepsError(f"step {name!r} needs a non-empty list of strings as command")
        steps[name] = Step(name=name, component=components[component], command=tuple(command))
    order = tuple(data.get("pipeline", {}).get("order", ()))
    unknown = [s for s in order if s not in steps]
    if unknown:
        raise StepsError(f"[pipeline].order names unknown steps {unknown}")
    return Steps(MappingProxyType(components), MappingProxyType(steps), order)


def load_steps(path: Path = STEPS_FILE) -> Steps:
    return parse_steps(tomllib.loads(path.read_text()))


@dataclass(frozen=True)
class LocalRun:
    """A step as a local process: what its pod runs, in the component's virtualenv and directory."""

    step: Step
    argv: tuple[str, ...]  # the command, its executable resolved in the venv's bin
    cwd: Path  # the component's local_dir
    env: dict[str, str]

    @property
    def venv_dir(self) -> Path:
        return Path(self.env["VIRTUAL_ENV"])


def local_run(step: Step, *, repo_root: Path, venvs_dir: Path, base_env: Mapping[str, str],
              plain_env: Mapping[str, str] = MappingProxyType({}), extra_args: Sequence[str] = ()) -> LocalRun:
    """How `step` runs on this machine: `base_env` (the caller's environment: where a pod gets its
    Secrets, a local run has the libpq and Alpha Vantage variables), then `plain_env` (the non-secret
    environment the DAG gives the pod), then the component's own env from steps.toml; the component's
    venv first on PATH."""
    component = step.component
    venv = venvs_dir / component.venv
    env = {**base_env, **plain_env, **component.env}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env.pop("PYTHONHOME", None)
    argv = (str(venv / "bin" / step.command[0]), *step.command[1:], *extra_args)
    return LocalRun(step=step, argv=argv, cwd=repo_root / component.local_dir, env=env)
