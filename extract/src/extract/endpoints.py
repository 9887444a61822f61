"""The Alpha Vantage endpoints of the project: one `Endpoint` entry per API function.

An entry names everything about one function: the `extract` command that loads it, the raw table it
lands in (created from this registry by `extract migrate`), the parser that validates an answer, and
the sandbox generator that answers it. The CLI, the raw tables, `protocol.interpret` and the sandbox
all read this registry; nothing else lists endpoints. Adding one is an entry here plus its tests
(docs/extract.md, "Adding an endpoint").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from extract import protocol
from extract.errors import PermanentSymbolError
from extract.sandbox import data

# (doc, symbol, key, body) -> what the answer holds; raises a typed ExtractError otherwise
ParseFn = Callable[[Any, str, "str | None", bytes], protocol.Content]
# the sandbox's answer body for one request
SandboxFn = Callable[[data.SandboxRequest], bytes]

# `extract` commands that are not endpoints
BUILTIN_COMMANDS = frozenset({"migrate", "sandbox", "accept-gap"})
_TABLE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_COMMAND = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
_FUNCTION = re.compile(r"^[A-Z][A-Z0-9_]{0,62}$")


@dataclass(frozen=True)
class Endpoint:
    """One Alpha Vantage function and everything the project does with it."""

    function: str  # the API's `function=` parameter
    command: str  # `extract <command>` loads it for every symbol
    table: str  # raw.<table>: one row per validated answer (db.RAW_COLUMNS)
    parse: ParseFn  # validate one decoded answer (a module-level function: big ones go to helper processes)
    sandbox: SandboxFn  # the sandbox's answer for a known symbol
    summary: str  # one line: CLI help and docs
    # the real API's answer (body) for a symbol it does not know; None = its `Error Message` (invalid call)
    unknown_symbol: bytes | None = None
    # takes outputsize=compact|full (`--full`, and the first load of a symbol asks `full`)
    output_sizes: bool = False
    # the sandbox serves the session in progress (a partial bar) during trading hours
    live: bool = False
    # store payloads uncompressed (TOAST `external`): large, parsed often (docs/extract.md, storage)
    store_uncompressed: bool = False
    # the function asked instead for a symbol this one has nothing about (`{}` after a retry), same command
    fallback: str | None = None

    @property
    def relation(self) -> str:
        return f"raw.{self.table}"


_REGISTRY: dict[str, Endpoint] = {}


def register(endpoint: Endpoint) -> Endpoint:
    """Add an endpoint; refuses names that are malformed or already taken (function, command, table)."""
    checks = ((_FUNCTION, endpoint.function, "function"), (_COMMAND, endpoint.command, "command"),
              (_TABLE, endpoint.table, "table"))
    for pattern, value, what in checks:
        if not pattern.match(value):
            raise ValueError(f"endpoint {endpoint.function!r}: {what} {value!r} does not match {pattern.pattern}")
    if endpoint.command in BUILTIN_COMMANDS:
        raise ValueError(f"endpoint {endpoint.function!r}: command {endpoint.command!r} is a built-in command")
    for other in _REGISTRY.values():
        for what in ("function", "command", "table"):
            if getattr(other, what) == getattr(endpoint, what):
                raise ValueError(f"endpoint {endpoint.function!r}: {what} {getattr(endpoint, what)!r} is taken"
                                 f" by {other.function}")
    _REGISTRY[endpoint.function] = endpoint
    return endpoint


@contextmanager
def registered(endpoint: Endpoint) -> Iterator[Endpoint]:
    """`endpoint` registered for the duration of the block (tests)."""
    register(endpoint)
    try:
        yield endpoint
    finally:
        _REGISTRY.pop(endpoint.function, None)


def all_endpoints() -> tuple[Endpoint, ...]:
    return tuple(_REGISTRY.values())


def find(function: str) -> Endpoint | None:
    return _REGISTRY.get(function)


def endpoint(function: str) -> Endpoint:
    """The entry of `function`; an unknown one is a permanent error for the symbol."""
    found = _REGISTRY.get(function)
    if found is None:
        raise PermanentSymbolError(f"unsupported function {function!r}", reason_code="invalid_payload")
    return found


def by_command(command: str) -> Endpoint:
    for candidate in _REGISTRY.values():
        if candidate.command == command:
            return candidate
    raise KeyError(f"no endpoint for `extract {command}`; known: {', '.join(commands())}")


def commands() -> tuple[str, ...]:
    return tuple(e.command for e in _REGISTRY.values())


# -- the endpoints ---------------------------------------------------------------------------------

DAILY = register(Endpoint(
    function=protocol.DAILY,
    command="prices",
    table="time_series_daily",
    parse=protocol.parse_daily,
    sandbox=data.daily_answer,
    summary="TIME_SERIES_DAILY (daily OHLCV bars) per symbol into raw.time_series_daily",
    output_sizes=True,
    live=True,
    store_uncompressed=True,
))
OVERVIEW = register(Endpoint(
    function=protocol.OVERVIEW,
    command="companies",
    table="company_overview",
    parse=protocol.parse_overview,
    sandbox=data.overview_answer,
    summary="OVERVIEW (company name, sector, industry, market cap, ...) per symbol into raw.company_overview;"
            " ETF_PROFILE for a symbol without one",
    unknown_symbol=b"{}",
    fallback=protocol.ETF_PROFILE,
))
ETF_PROFILE = register(Endpoint(
    function=protocol.ETF_PROFILE,
    command="etf-profiles",
    table="etf_profile",
    parse=protocol.parse_etf_profile,
    sandbox=data.etf_profile_answer,
    summary="ETF_PROFILE (net assets, expense ratio, sectors, holdings) per symbol into raw.etf_profile",
    unknown_symbol=b"{}",
))
GLOBAL_QUOTE = register(Endpoint(
    function=protocol.GLOBAL_QUOTE,
    command="quotes",
    table="global_quote",
    parse=protocol.parse_global_quote,
    sandbox=data.global_quote_answer,
    summary="GLOBAL_QUOTE (latest price and change) per symbol into raw.global_quote",
    unknown_symbol=b'{"Global Quote": {}}',
    live=True,
))

__all__ = ["DAILY", "ETF_PROFILE", "GLOBAL_QUOTE", "OVERVIEW", "Endpoint", "all_endpoints", "by_command",
           "commands", "endpoint", "find", "register", "registered"]
