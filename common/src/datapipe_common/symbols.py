"""The symbol rule and the default symbol list (`DATAPIPE_SYMBOLS`).

A symbol is an upper-case ticker of letters and digits, with `.` or `-` inside for exchange
suffixes and share classes (`TSCO.LON`, `BRK-B`), at most 20 characters. Input is upper-cased and
trimmed; duplicates are dropped, the order is kept. The chart's `pipeline.symbols` default equals
`DEFAULT_SYMBOLS` (tested).

Stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from datapipe_common.config import ConfigError

DEFAULT_SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "JPM", "V", "IBM")
MAX_SYMBOL_LENGTH = 20
SYMBOL_RULE = (f"letters and digits, with '.' or '-' inside (e.g. TSCO.LON, BRK-B), "
               f"at most {MAX_SYMBOL_LENGTH} characters")
_SYMBOL = re.compile(rf"[A-Z0-9](?:[A-Z0-9.\-]{{0,{MAX_SYMBOL_LENGTH - 2}}}[A-Z0-9])?")


def is_symbol(text: str) -> bool:
    """True when `text` (already upper-case) follows the symbol rule."""
    return _SYMBOL.fullmatch(text) is not None


def parse_symbols(text: str, *, source: str = "DATAPIPE_SYMBOLS") -> tuple[str, ...]:
    """`"AAPL, msft,IBM,aapl"` -> `("AAPL", "MSFT", "IBM")`; a `ConfigError` naming `source` and
    every symbol that breaks the rule, or saying that none was given."""
    symbols = tuple(dict.fromkeys(s.strip().upper() for s in text.split(",") if s.strip()))
    if not symbols:
        raise ConfigError(f"{source} names no symbol: give a comma-separated list such as 'AAPL,MSFT'")
    bad = [s for s in symbols if not is_symbol(s)]
    if bad:
        raise ConfigError(f"{source} has invalid symbols {', '.join(map(repr, bad))}: {SYMBOL_RULE}")
    return symbols


def symbols_from_env(env: Mapping[str, str], name: str = "DATAPIPE_SYMBOLS") -> tuple[str, ...]:
    """The tracked symbols: `env[name]` when set, else `DEFAULT_SYMBOLS`."""
    raw = env.get(name, "").strip()
    return parse_symbols(raw, source=name) if raw else DEFAULT_SYMBOLS
