"""Validate large payloads in worker processes.

Workers are threads (they wait on HTTP and the warehouse), but validating a 5,000-bar history is pure
Python and would hold the GIL: with N parse processes, big payloads are validated in parallel on every
core. Small payloads (compact series, overviews) are validated inline: shipping them would cost more.
The pool starts lazily, so a daily compact run never spawns it.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from extract import protocol
from extract.endpoints import ParseFn, endpoint

INLINE_MAX_BYTES = 128 * 1024
log = logging.getLogger("extract.parsing")


def _validate(
    parse: ParseFn, status: int, content_type: str | None, body: bytes, function: str, symbol: str, key: str | None
) -> protocol.Content:
    parsed = protocol.interpret_with(parse, status, content_type, body, function=function, symbol=symbol, key=key)
    return protocol.Content(parsed.bars, parsed.last_refreshed, parsed.first_day, parsed.last_day)


class Parser:
    """`interpret` with the same contract as protocol.interpret, using `processes` helpers (0 = inline)."""

    def __init__(self, processes: int, inline_max_bytes: int = INLINE_MAX_BYTES) -> None:
        self.processes = processes
        self.inline_max_bytes = inline_max_bytes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn, not fork: the parent has threads and open connections
                self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
            return self._pool

    def interpret(
        self, status: int, content_type: str | None, body: bytes, *, function: str, symbol: str, key: str | None
    ) -> protocol.Parsed:
        parse = endpoint(function).parse
        if self.processes <= 0 or len(body) <= self.inline_max_bytes:
            return protocol.interpret_with(parse, status, content_type, body, function=function, symbol=symbol,
                                           key=key)
        try:
            # the parser travels by reference (module and name): the helper imports it
            future = self._get_pool().submit(_validate, parse, status, content_type, body, function, symbol, key)
            # typed errors raised in the helper come back as themselves
            content = future.result()
        except (BrokenProcessPool, OSError) as exc:
            # No helpers here (no /dev/shm, an unguarded __main__, a killed helper): validate inline.
            log.warning("parse helper processes unavailable (%s): validating in the worker threads", exc)
            self.processes = 0
            return protocol.interpret_with(parse, status, content_type, body, function=function, symbol=symbol,
                                           key=key)
        return protocol.Parsed(function, symbol, body, *content)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
