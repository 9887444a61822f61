"""The pipeline steps, read from `steps.toml` beside this file: the one definition of each command.

The DAG, `make pipeline` (scripts/run-step) and the chart all read that file, so the command a pod
runs, the command a local run executes and the command a developer types cannot drift apart.
"""

from __future__ import annotations

import tomllib
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
