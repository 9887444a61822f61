"""`extract`: the console script.

    extract prices    [--symbols AAPL,MSFT] [--full]   TIME_SERIES_DAILY per symbol into raw.time_series_daily
    extract companies [--symbols ...]                  OVERVIEW per symbol into raw.company_overview
    extract quotes    [--symbols ...]                  GLOBAL_QUOTE per symbol into raw.global_quote
    extract migrate                                    create the raw/ops tables (every run does it too)
    extract accept-gap SYMBOL [SYMBOL ...]             accept a hole in a symbol's history (docs/extract.md)
    extract sandbox   [--port 8765] [--host 127.0.0.1] [--as-of YYYY-MM-DD] [--fault SPEC ...]

One command per endpoint of extract.endpoints (the list above is theirs today).

Configuration comes from the environment (docs/extract.md); exit 0 only when every symbol succeeded.
An expected error (configuration, warehouse, permissions) is one line naming what failed and what to
do, with its exit code (docs/common.md, "Exit codes"); `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from datapipe_common import failures
from datapipe_common.config import ConfigError
from datapipe_common.libpq import libpq_env
from datapipe_common.symbols import parse_symbols

from extract import db, endpoints
from extract.masking import configure_logging, mask_secret
from extract.settings import Settings

if TYPE_CHECKING:
    from extract.sandbox.server import SandboxConfig

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_WAREHOUSE = (
    failures.EXIT_OK, failures.EXIT_FAILED, failures.EXIT_CONFIG, failures.EXIT_WAREHOUSE)
log = logging.getLogger("extract")
HINTS = {
    failures.WAREHOUSE: "check PGHOST/PGPORT/PGDATABASE/PGUSER/PGPASSWORD and that the warehouse is up"
    " (`make db-up` locally), then run extract again (stored payloads are kept)",
    failures.PERMISSION: "run extract as the pipeline writer role (PGUSER), which owns the raw and ops schemas",
}


def _parser() -> argparse.ArgumentParser:
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="print the traceback of an error (default: one line saying what failed and what to do)")
    p = argparse.ArgumentParser(prog="extract", description="Alpha Vantage extractor and sandbox API.", parents=[debug])
    sub = p.add_subparsers(dest="command", required=True)
    for endpoint in endpoints.all_endpoints():
        sp = sub.add_parser(endpoint.command, help=endpoint.summary, parents=[debug])
        sp.add_argument("--symbols", help="comma-separated symbols (default: DATAPIPE_SYMBOLS, else the 10 defaults)")
        sp.add_argument("--missing", action="store_true",
                        help=f"only the symbols with no answer in {endpoint.relation} yet (nothing else is asked)")
        if endpoint.output_sizes:
            sp.add_argument(
                "--full", action="store_true", help="outputsize=full for every symbol (default: only first loads)"
            )
    sub.add_parser("migrate", help="create the raw and ops tables (idempotent)", parents=[debug])
    ag = sub.add_parser("accept-gap", help="accept the recorded hole in a symbol's daily history: its history "
                        "restarts after it (docs/extract.md)", parents=[debug])
    ag.add_argument("symbols", nargs="+", metavar="SYMBOL")
    sb = sub.add_parser("sandbox", help="run the sandbox Alpha Vantage API (see docs/extract.md)", parents=[debug])
    sb.add_argument("--host", default=None, help="listen address (default SANDBOX_HOST or 127.0.0.1)")
    sb.add_argument("--port", type=int, default=None, help="TCP port (default SANDBOX_PORT or 8765; 0 = any free port)")
    sb.add_argument(
        "--as-of",
        default=None,
        help="pin the calendar: the last session is the last trading day <= this date "
        "(default SANDBOX_AS_OF, else today's clock in US/Eastern)",
    )
    sb.add_argument(
        "--now",
        default=None,
        help="pin the clock, YYYY-MM-DDTHH:MM in US/Eastern (default SANDBOX_NOW, else the real clock)",
    )
    sb.add_argument(
        "--intraday",
        action="store_true",
        help="during a session (9:30-16:00 ET) serve today's partial bar, changing until the close "
        "(also SANDBOX_INTRADAY=1; ignored with --as-of)",
    )
    sb.add_argument(
        "--unknown-symbols",
        default=None,
        help="comma-separated symbols answered as unknown (default SANDBOX_UNKNOWN_SYMBOLS)",
    )
    sb.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault, e.g. 'throttle?every=3' (repeatable; also SANDBOX_FAULTS, ';'-separated)",
    )
    sb.add_argument(
        "--require-key",
        default=None,
        help="answer the invalid-key error unless apikey equals this "
        "(default SANDBOX_REQUIRE_KEY; unset = any key or none)",
    )
    sb.add_argument(
        "--tier",
        choices=("premium", "free"),
        default=None,
        help="the tier of every key: free refuses outputsize=full like Alpha Vantage does (default SANDBOX_TIER, "
        "else premium)",
    )
    sb.add_argument(
        "--cache-bodies",
        "--cache-symbols",  # the first name of this flag; kept for callers that use it
        dest="cache_bodies",
        type=int,
        default=None,
        help="response bodies kept in memory (default SANDBOX_CACHE_BODIES or 64; a full history is ~0.6 MB)",
    )
    return p


def run_extract(command: str, args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from extract.runner import Run, summary_table

    try:
        settings = Settings.from_env(env)
        symbols = parse_symbols(args.symbols, source="--symbols") if args.symbols else settings.symbols
    except ConfigError as exc:
        configure_logging(None)
        log.error("configuration error: %s", exc)
        return EXIT_CONFIG
    configure_logging(settings.secrets, settings.log_level)
    run = Run(settings, command, symbols, full=getattr(args, "full", False), missing_only=args.missing)
    outcomes = run.execute()
    summary_table(outcomes)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        log.error("%d of %d symbols did not succeed (run %s)", len(failed), len(outcomes), run.run_id)
        return EXIT_FAILED
    return EXIT_OK


def run_migrate(env: Mapping[str, str]) -> int:
    configure_logging(None)
    try:
        pg_env = libpq_env(env)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return EXIT_CONFIG
    with db.connect(pg_env) as conn:
        db.migrate(conn)
    log.info("schemas raw and ops are up to date")
    return EXIT_OK


ACCEPTED_NEXT_STEPS = (
    "Next: the next `extract prices` stores the compact answer and the history restarts at its oldest bar;"
    " then rebuild the marts with a full refresh: `DBT_FULL_REFRESH=1 make pipeline`, or trigger the"
    ' market_data_daily DAG with {"full_refresh": true}.'
)


def run_accept_gap(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Mark each symbol's open gap (ops.history_gaps) accepted; exit 1 when a symbol has none."""
    configure_logging(None)
    try:
        symbols = parse_symbols(",".join(args.symbols), source="accept-gap")
        pg_env = libpq_env(env)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return EXIT_CONFIG
    missing = []
    with db.connect(pg_env) as conn:  # a warehouse error reaches failures.run_cli: one line, exit 3
        db.migrate(conn)
        for symbol in symbols:
            gap = db.accept_gap(conn, symbol)
            if gap is None:
                missing.append(symbol)
                continue
            print(f"{symbol}: accepted the gap of {gap.missing_sessions} sessions {gap.missing_from}.."
                  f"{gap.missing_to} (newest stored bar {gap.newest_stored})")
    if len(missing) < len(symbols):
        print(ACCEPTED_NEXT_STEPS)
    if missing:
        log.error("no unaccepted gap recorded for %s (ops.history_gaps): nothing changed for %s",
                  ", ".join(missing), "it" if len(missing) == 1 else "them")
        return EXIT_FAILED
    return EXIT_OK


def sandbox_config(args: argparse.Namespace, env: Mapping[str, str]) -> SandboxConfig:
    """The sandbox's flags, else its SANDBOX_* variables; a ConfigError names the bad one."""
    from datapipe_common.calendar import NEW_YORK

    from extract.sandbox.faults import FaultSpecError, parse_faults
    from extract.sandbox.server import TIERS, SandboxConfig

    as_of_raw = args.as_of or env.get("SANDBOX_AS_OF", "").strip() or None
    now_raw = args.now or env.get("SANDBOX_NOW", "").strip() or None
    try:
        as_of = dt.date.fromisoformat(as_of_raw) if as_of_raw else None
    except ValueError:
        raise ConfigError(f"--as-of / SANDBOX_AS_OF {as_of_raw!r} is not a YYYY-MM-DD date") from None
    try:
        now = dt.datetime.fromisoformat(now_raw).replace(tzinfo=NEW_YORK) if now_raw else None
    except ValueError:
        raise ConfigError(f"--now / SANDBOX_NOW {now_raw!r} is not a YYYY-MM-DDTHH:MM time") from None
    try:
        faults = parse_faults(env.get("SANDBOX_FAULTS", "")) + parse_faults(list(args.fault))
    except FaultSpecError as exc:
        raise ConfigError(str(exc)) from None
    unknown_raw = args.unknown_symbols if args.unknown_symbols is not None else env.get("SANDBOX_UNKNOWN_SYMBOLS", "")
    try:
        port = args.port if args.port is not None else int(env.get("SANDBOX_PORT", "8765"))
        cache = (
            args.cache_bodies
            if args.cache_bodies is not None
            else int(env.get("SANDBOX_CACHE_BODIES") or env.get("SANDBOX_CACHE_SYMBOLS") or "64")
        )
    except ValueError as exc:
        raise ConfigError(f"bad SANDBOX_PORT / SANDBOX_CACHE_BODIES: {exc}") from None
    tier = args.tier or env.get("SANDBOX_TIER", "").strip().lower() or "premium"
    if tier not in TIERS:
        raise ConfigError(f"SANDBOX_TIER={tier!r}: use premium or free")
    return SandboxConfig(
        host=args.host or env.get("SANDBOX_HOST", "127.0.0.1"),
        port=port,
        as_of=as_of,
        unknown_symbols=frozenset(s.strip().upper() for s in unknown_raw.split(",") if s.strip()),
        faults=faults,
        intraday=args.intraday or env.get("SANDBOX_INTRADAY", "").strip().lower() in ("1", "true", "yes"),
        now=now,
        require_key=args.require_key or env.get("SANDBOX_REQUIRE_KEY") or None,
        cache_bodies=max(1, cache),
        tier=tier,
    )


def run_sandbox(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from extract.sandbox.server import serve

    configure_logging(None, env.get("SANDBOX_LOG_LEVEL", "INFO"))
    try:
        config = sandbox_config(args, env)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    try:
        serve(config)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
        return EXIT_CONFIG
    return EXIT_OK


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ) if env is None else env
    secrets = _secrets(env)

    def body() -> int:
        if args.command in endpoints.commands():
            return run_extract(args.command, args, env)
        if args.command == "migrate":
            return run_migrate(env)
        if args.command == "accept-gap":
            return run_accept_gap(args, env)
        return run_sandbox(args, env)

    return failures.run_cli("extract", body, debug=getattr(args, "debug", False), hints=HINTS,
                            mask=lambda text: mask_secret(text, secrets))


def _secrets(env: Mapping[str, str]) -> tuple[str, ...]:
    """The key and the base URL's credentials, for masking even when the settings are invalid."""
    from datapipe_common.masking import url_secrets

    key = env.get("ALPHAVANTAGE_API_KEY", "").strip()
    return tuple(s for s in (key, *url_secrets(env.get("ALPHAVANTAGE_BASE_URL", "").strip())) if s)


if __name__ == "__main__":
    sys.exit(main())
