"""Configuration parsing every component shares: `ConfigError`, numbers from the environment, and
env files of `export NAME=value` lines (`.local/warehouse.env`, `.local/sandbox.env`, ...).

Stdlib only: `scripts/` import it without a virtualenv.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the setting and says what to do."""


def _raw(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip()


def _check_bounds(name: str, raw: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        raise ConfigError(f"{name}={raw!r} must be between {minimum:g} and {maximum:g}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={raw!r} must be >= {minimum:g}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={raw!r} must be <= {maximum:g}")


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
    """`env[name]` as an integer (`default` when unset or blank); bounds are inclusive."""
    raw = _raw(env, name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    _check_bounds(name, raw, value, minimum, maximum)
    return value


def env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float | None = None,
              maximum: float | None = None) -> float:
    """`env[name]` as a finite number (`default` when unset or blank); bounds are inclusive."""
    raw = _raw(env, name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name}={raw!r} is not a finite number")
    _check_bounds(name, raw, value, minimum, maximum)
    return value


def env_flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    """`1/true/yes/on` or `0/false/no/off` (any case); `default` when unset or blank."""
    raw = _raw(env, name).lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a yes/no value (use true or false)")


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of a file of `export NAME=value` (or `NAME=value`) lines; `{}` when it does not
    exist. Values are shell words (quoted as `write_env_file` writes them); `#` starts a comment line."""
    env: dict[str, str] = {}
    if not path.exists():
        return env
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        name, sep, value = line.partition("=")
        if not sep or not name.isidentifier():
            raise ConfigError(f"{path}:{number}: expected `export NAME=value`, got {line[:40]!r}")
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: {name} has a malformed value ({exc})") from None
        env[name] = words[0] if words else ""
    return env


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """Write `export NAME=value` lines (values shell-quoted) readable only by the owner (0600):
    env files hold passwords."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.writelines(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())
    path.chmod(0o600)
