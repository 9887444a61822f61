"""Injectable, deterministic faults of the sandbox API.

A fault is written `KIND[?PARAM=VALUE&...]`, e.g. `throttle?every=3`, `html503?symbols=MSFT&times=2`,
`quota?after=5`, `slow?seconds=2&symbols=AAPL`. Several faults are given by repeating `--fault`, or
`;`-separated in SANDBOX_FAULTS, or as a JSON list to POST /_sandbox/faults. The first fault that
matches a request decides its answer.

Selection parameters (all optional; a fault with none matches every request):
  every=N      the Nth, 2Nth, ... request to /query (counted over all requests since start/reset)
  after=N      every request after the first N
  symbols=A,B  only these symbols (a bulk request: when it names one of them)
  functions=F,G  only these API functions
  times=K      at most K times per symbol (then the symbol is served normally: retry-then-success)
Kind parameters: `seconds=S` (slow), `style=note|information` (throttle).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qs

KINDS = {
    "throttle": "Note/Information throttle text (HTTP 200)",
    "error": "Error Message: invalid API call (HTTP 200)",
    "quota": "Information: daily quota exhausted, the text embeds the API key (HTTP 200)",
    "premium": "Information: premium endpoint (HTTP 200)",
    "demo": "Information: demo API key misuse (HTTP 200)",
    "html503": "HTTP 503 with an HTML outage page",
    "slow": "delay the answer by `seconds` (default 5) before answering normally",
    "truncate": "JSON body cut in half (HTTP 200, consistent Content-Length)",
    "empty": "`{}` (HTTP 200)",
    "noseries": "Meta Data without the series key (HTTP 200)",
    "http429": "HTTP 429 Too Many Requests",
    "http500": "HTTP 500 Internal Server Error (JSON body)",
    "reset": "TCP connection reset without an answer",
}


class FaultSpecError(ValueError):
    """A fault spec that cannot be parsed; the message names the bad part."""


@dataclass
class Fault:
    kind: str
    every: int = 0
    after: int = 0
    symbols: frozenset[str] = frozenset()
    functions: frozenset[str] = frozenset()
    times: int = 0
    seconds: float = 5.0
    style: str = "information"
    fired: Counter[str] = field(default_factory=Counter)

    @classmethod
    def parse(cls, spec: str) -> Fault:
        kind, _, query = spec.strip().partition("?")
        kind = kind.strip().lower()
        if kind not in KINDS:
            raise FaultSpecError(f"unknown fault kind {kind!r} in {spec!r}; known: {', '.join(KINDS)}")
        fault = cls(kind)
        try:
            params = parse_qs(query, keep_blank_values=False, strict_parsing=bool(query))
        except ValueError as exc:
            raise FaultSpecError(f"bad parameters in fault {spec!r}: {exc}") from None
        for name, values in params.items():
            value = values[-1]
            try:
                if name in ("every", "after", "times"):
                    setattr(fault, name, int(value))
                    if getattr(fault, name) < 0:
                        raise ValueError("must be >= 0")
                elif name == "seconds":
                    fault.seconds = float(value)
                elif name in ("symbols", "functions"):
                    setattr(fault, name, frozenset(v.strip().upper() for v in value.split(",") if v.strip()))
                elif name == "style":
                    if value not in ("note", "information"):
                        raise ValueError("style is note or information")
                    fault.style = value
                else:
                    raise ValueError("unknown parameter")
            except ValueError as exc:
                raise FaultSpecError(f"fault {spec!r}: {name}={value!r}: {exc}") from None
        return fault

    def matches(self, n: int, function: str, symbol: str) -> bool:
        if self.every and n % self.every:
            return False
        if self.after and n <= self.after:
            return False
        if self.symbols and not self.symbols.intersection(symbol.split(",")):  # bulk requests name several
            return False
        if self.functions and function not in self.functions:
            return False
        return not (self.times and self.fired[symbol] >= self.times)

    def describe(self) -> str:
        parts = []
        for name in ("every", "after", "times"):
            if getattr(self, name):
                parts.append(f"{name}={getattr(self, name)}")
        for name in ("symbols", "functions"):
            if getattr(self, name):
                parts.append(f"{name}={','.join(sorted(getattr(self, name)))}")
        if self.kind == "slow":
            parts.append(f"seconds={self.seconds:g}")
        if self.kind == "throttle" and self.style != "information":
            parts.append(f"style={self.style}")
        return self.kind + ("?" + "&".join(parts) if parts else "")


def parse_faults(specs: list[str] | str) -> list[Fault]:
    if isinstance(specs, str):
        specs = [s for s in specs.split(";") if s.strip()]
    return [Fault.parse(s) for s in specs if s.strip()]


class FaultPlan:
    """The active faults and the request counter, shared by the server threads."""

    def __init__(self, faults: list[Fault]) -> None:
        self._lock = threading.Lock()
        self.faults = faults
        self.count = 0

    def replace(self, faults: list[Fault]) -> None:
        with self._lock:
            self.faults = faults

    def reset(self) -> None:
        with self._lock:
            self.count = 0
            for f in self.faults:
                f.fired.clear()

    def next(self, function: str, symbol: str) -> tuple[int, Fault | None]:
        """Count one request and pick the fault that answers it (or None)."""
        with self._lock:
            self.count += 1
            n = self.count
            for fault in self.faults:
                if fault.matches(n, function, symbol):
                    fault.fired[symbol] += 1
                    return n, fault
            return n, None
