"""Failures that explain themselves: every console script turns an expected error into one line
naming what failed and what to do, with one exit code per kind (docs/common.md, "Exit codes").
A traceback is printed only with `--debug`.

    def main(argv=None):
        args = parser.parse_args(argv)
        return run_cli("quality", lambda: COMMANDS[args.command](settings), debug=args.debug,
                       hints={WAREHOUSE: "...", FILES: "..."})

Errors are recognised without importing their libraries (this module is stdlib only): database
errors by their SQLSTATE (psycopg, psycopg2 and SQLAlchemy wrapping them), Great Expectations by
its module. Where a library wraps another's error, the innermost database error decides.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterator, Mapping

from datapipe_common.config import ConfigError

# Exit codes: the same meaning in every console script (docs/common.md).
EXIT_OK = 0
EXIT_FAILED = 1  # the job ran and found a problem: symbols failed, the gate failed, publish refused
EXIT_CONFIG = 2  # a setting is missing or invalid; nothing was done
EXIT_WAREHOUSE = 3  # the warehouse is unreachable, went away, or failed a statement
EXIT_PERMISSION = 4  # the warehouse refused the role a privilege (InsufficientPrivilege)
EXIT_TOOL = 5  # a file (missing, not writable) or Great Expectations failed
EXIT_BUG = 70  # anything unexpected (EX_SOFTWARE): a bug to report with the --debug traceback
EXIT_INTERRUPTED = 130

# kinds of failure, the keys of `hints`
CONFIG, WAREHOUSE, PERMISSION, FILES, GX, BUG = "config", "warehouse", "permission", "files", "gx", "bug"
EXIT_CODES = {CONFIG: EXIT_CONFIG, WAREHOUSE: EXIT_WAREHOUSE, PERMISSION: EXIT_PERMISSION, FILES: EXIT_TOOL,
              GX: EXIT_TOOL, BUG: EXIT_BUG}
DEFAULT_HINTS = {
    CONFIG: "fix the setting and run again",
    WAREHOUSE: "check PGHOST/PGPORT/PGDATABASE/PGUSER and that the warehouse is up (`make db-up` locally),"
    " then run again",
    PERMISSION: "connect as a role that holds this privilege (PGUSER), or grant it",
    FILES: "fix the path or its permissions and run again",
    GX: "run again with --debug for the traceback",
    BUG: "this is a bug: run again with --debug and report the traceback",
}
# SQLSTATE classes and codes that mean "the warehouse went away or cannot be reached"
_LOST_CLASSES = ("08",)  # connection exception
_LOST_CODES = ("57P01", "57P02", "57P03", "53300")  # admin/crash shutdown, cannot connect now, too many connections


class Failure(Exception):
    """An expected failure, explained: `what` failed, what to `do`, and its `kind` (exit code)."""

    def __init__(self, kind: str, what: str, do: str) -> None:
        super().__init__(what)
        self.kind, self.what, self.do = kind, what, do

    def __str__(self) -> str:
        return self.line()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.kind, EXIT_BUG)

    def line(self) -> str:
        return f"{self.what} -> {self.do}"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what it wraps: SQLAlchemy's `.orig`, `__cause__`, `__context__` (breadth first)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        err = todo.pop(0)
        if id(err) in seen:
            continue
        seen.add(id(err))
        yield err
        for inner in (getattr(err, "orig", None), err.__cause__, err.__context__):
            if isinstance(inner, BaseException):
                todo.append(inner)


def _module(exc: BaseException) -> str:
    return type(exc).__module__ or ""


def _is_database_error(exc: BaseException) -> bool:
    return _module(exc).split(".")[0] in ("psycopg", "psycopg2", "sqlalchemy")


def first_line(exc: BaseException | str) -> str:
    """The first non-blank line of an error message (database errors add DETAIL/HINT lines)."""
    text = exc if isinstance(exc, str) else str(exc)
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return "" if isinstance(exc, str) else type(exc).__name__


def kind_of(exc: BaseException) -> str:
    """Which kind of failure `exc` is (a key of EXIT_CODES)."""
    chain = list(_chain(exc))
    for err in chain:
        if isinstance(err, Failure):
            return err.kind
    for err in chain:
        if not _is_database_error(err):
            continue
        sqlstate = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None) or ""
        if sqlstate == "42501":
            return PERMISSION
        return WAREHOUSE
    for err in chain:
        if isinstance(err, ConfigError):
            return CONFIG
    for err in chain:
        if isinstance(err, OSError):
            return FILES
    if any(_module(err).startswith("great_expectations") for err in chain):
        return GX
    return BUG


def is_connection_lost(exc: BaseException) -> bool:
    """True when `exc` says the warehouse cannot be reached or went away (not: refused a statement)."""
    for err in _chain(exc):
        if not _is_database_error(err):
            continue
        sqlstate = str(getattr(err, "sqlstate", None) or getattr(err, "pgcode", None) or "")
        if sqlstate.startswith(_LOST_CLASSES) or sqlstate in _LOST_CODES:
            return True
        if not sqlstate and type(err).__name__ in ("OperationalError", "InterfaceError"):
            return True
    return False


def explain(exc: BaseException, hints: Mapping[str, str] | None = None,
            mask: Callable[[str], str] = lambda text: text) -> Failure:
    """`exc` as a Failure: what failed (the error's first line, masked) and what to do (`hints`
    for its kind, else the default)."""
    for err in _chain(exc):
        if isinstance(err, Failure):
            return Failure(err.kind, mask(err.what), mask(err.do))
    kind = kind_of(exc)
    do = (hints or {}).get(kind) or DEFAULT_HINTS[kind]
    detail = first_line(_innermost_database_error(exc) or exc)
    if kind == WAREHOUSE:
        what = f"warehouse {'unreachable or lost' if is_connection_lost(exc) else 'error'}: {detail}"
    elif kind == PERMISSION:
        what = f"warehouse refused: {detail}"
    elif kind == CONFIG:
        what = f"configuration error: {detail}"
    elif kind == FILES:
        what = f"file error: {detail}"
    elif kind == GX:
        what = f"Great Expectations failed: {type(exc).__name__}: {detail}"
    else:
        what = f"unexpected error: {type(exc).__name__}: {detail}"
    return Failure(kind, mask(what), mask(do))


def _innermost_database_error(exc: BaseException) -> BaseException | None:
    found = None
    for err in _chain(exc):
        if _is_database_error(err):
            found = err
    return found


def run_cli(prog: str, body: Callable[[], int], *, debug: bool = False, hints: Mapping[str, str] | None = None,
            mask: Callable[[str], str] = lambda text: text) -> int:
    """Run a command's body; an exception becomes `prog: what -> do` on stderr and its exit code
    (with the traceback first when `debug`)."""
    try:
        return body()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            print(mask("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
        failure = explain(exc, hints, mask)
        print(f"{prog}: {failure.line()}", file=sys.stderr)
        return failure.exit_code
