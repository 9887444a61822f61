"""`extract quotes`: the tracked symbols' live prices into raw.quotes (append-only, one row per symbol
and bar time), with every answer also kept as received in its endpoint's raw table.

Where a price comes from depends on the key (docs/extract.md, "Live quotes"):

- a premium key with `ALPHAVANTAGE_ENTITLEMENT=realtime|delayed`: the newest `TIME_SERIES_INTRADAY`
  bar per symbol (its time is the bar time), or with `ALPHAVANTAGE_BULK_QUOTES=true` one
  `REALTIME_BULK_QUOTES` request per 100 symbols (the item's timestamp is the bar time);
- otherwise (no entitlement, or a key known to be free): `GLOBAL_QUOTE` per symbol, the free keys'
  end-of-day price. It carries no time of day: its bar time is the close of its latest trading day
  (the shared calendar: 13:00 on early-close days), its row is marked `end_of_day`, and `fetched_at`
  says when it was asked.

A free key that asks for an entitlement gets a premium-feature answer: the run learns that the key is
free (ops.api_tiers), that symbol and the following ones ask `GLOBAL_QUOTE` instead. Same limiter,
retries and fault handling as every endpoint (extract.client); an empty quote is that symbol's
failure (`invalid_symbol`), the other symbols continue.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from datapipe_common.calendar import NEW_YORK, nyse

from extract import db, endpoints, protocol
from extract.client import Attempt, Response, RunStopped
from extract.errors import ExtractError, PermanentSymbolError, PremiumFeatureError
from extract.runner import Run, _now
from extract.settings import Settings

log = logging.getLogger("extract.quotes")

SOURCES: dict[str, endpoints.Endpoint] = {
    "intraday": endpoints.INTRADAY,
    "bulk": endpoints.BULK_QUOTES,
    "global_quote": endpoints.GLOBAL_QUOTE,
}
SOURCE_OF_FUNCTION = {e.function: name for name, e in SOURCES.items()}


def choose_source(entitlement: str | None, tier: str | None, bulk: bool) -> str:
    """Which endpoint gives the live prices: bulk or intraday for a premium entitlement, else GLOBAL_QUOTE."""
    if entitlement is None or tier == "free":
        return "global_quote"
    return "bulk" if bulk else "intraday"


@dataclass(frozen=True)
class QuoteRow:
    """One row of raw.quotes."""

    symbol: str
    bar_at: dt.datetime  # aware
    source: str  # intraday | bulk | global_quote
    delay: str  # realtime | delayed | end_of_day
    quote: dict[str, Any]  # the API's object as received


def _eastern(stamp: str) -> dt.datetime:
    """Alpha Vantage's 'YYYY-MM-DD HH:MM:SS[.fff]' (US/Eastern, no offset) -> an aware datetime."""
    return dt.datetime.fromisoformat(stamp).replace(tzinfo=NEW_YORK)


def session_close(day: dt.date) -> dt.datetime:
    """The close of `day`'s session (13:00 on early-close days); 16:00 when the calendar has no session."""
    calendar = nyse()
    if calendar.is_session(day):
        return calendar.session(day).close_at
    return dt.datetime.combine(day, dt.time(16, 0), tzinfo=NEW_YORK)


def quote_rows(function: str, body: bytes, delay: str) -> list[QuoteRow]:
    """The live price(s) in a validated answer (protocol.interpret accepted `body` already)."""
    doc = orjson.loads(body)
    source = SOURCE_OF_FUNCTION[function]
    if function == protocol.INTRADAY:
        series = doc[protocol.intraday_series_key(doc) or ""]
        newest = max(series)
        symbol = doc["Meta Data"]["2. Symbol"].upper()
        return [QuoteRow(symbol, _eastern(newest), source, delay, series[newest])]
    if function == protocol.BULK_QUOTES:
        return [QuoteRow(item["symbol"].upper(), _eastern(item["timestamp"]), source, delay, item)
                for item in doc["data"]]
    found = protocol.quote_object(doc)
    if found is None:
        raise PermanentSymbolError("no 'Global Quote' object", reason_code="invalid_payload")
    quote = found[1]
    day = dt.date.fromisoformat(quote["07. latest trading day"])
    return [QuoteRow(quote["01. symbol"].upper(), session_close(day), source, "end_of_day", quote)]


class QuotesRun(Run):
    """`extract quotes`: a Run whose endpoint is chosen per key, batched for bulk quotes."""

    def __init__(self, settings: Settings, symbols: Sequence[str]) -> None:
        super().__init__(settings, "quotes", symbols, endpoint=endpoints.GLOBAL_QUOTE)
        self.source = "global_quote"

    # -- the source --------------------------------------------------------------------------------
    def prepare(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        settings = self.settings
        self._use(choose_source(settings.entitlement, self.tier.value, settings.bulk_quotes))
        why = ("no ALPHAVANTAGE_ENTITLEMENT: end-of-day prices, what free keys get" if settings.entitlement is None
               else "the key is known to be free: end-of-day prices" if self.tier.is_free
               else f"entitlement={settings.entitlement}")
        log.info("quotes from %s (%s)", self.function, why)
        pruned = db.prune_payloads(conn, endpoints.INTRADAY, settings.intraday_retention_days)
        if pruned:
            log.info("deleted %d %s payload%s received more than %d days ago (EXTRACT_INTRADAY_RETENTION_DAYS)",
                     pruned, endpoints.INTRADAY.relation, "s" * (pruned != 1), settings.intraday_retention_days)

    def _use(self, source: str) -> None:
        self.source = source
        self.endpoint = SOURCES[source]
        self.function = self.endpoint.function
        self.params = {}
        if source != "global_quote" and self.settings.entitlement:
            self.params["entitlement"] = self.settings.entitlement
        if source == "intraday":
            self.params["interval"] = self.settings.intraday_interval

    @property
    def delay(self) -> str:
        return self.settings.entitlement or "end_of_day"

    def units(self) -> list[tuple[str, ...]]:
        if self.source != "bulk":
            return super().units()
        size = protocol.BULK_MAX_SYMBOLS
        return [tuple(self.symbols[i:i + size]) for i in range(0, len(self.symbols), size)]

    # -- one symbol (intraday, GLOBAL_QUOTE) ---------------------------------------------------------
    def _fetch(self, conn: psycopg.Connection[tuple[object, ...]], outcome: db.SymbolOutcome,
               attempt: Attempt) -> tuple[Response, db.Gap | None]:
        if outcome.function == protocol.INTRADAY and not self.tier.is_free:
            try:
                return self.client.fetch(outcome.function, outcome.symbol, attempt, extra=self.params), None
            except PremiumFeatureError as exc:
                self.tier.learn("free", exc.reason)
        # the free keys' fallback: end of day, no entitlement asked
        outcome.function = protocol.GLOBAL_QUOTE
        return self.client.fetch(protocol.GLOBAL_QUOTE, outcome.symbol, attempt), None

    def _store(self, conn: psycopg.Connection[tuple[object, ...]], outcome: db.SymbolOutcome, attempt: Attempt,
               response: Response, restart: db.Gap | None) -> db.SymbolOutcome:
        outcome = super()._store(conn, outcome, attempt, response, restart)
        if outcome.ok:
            rows = quote_rows(outcome.function, response.parsed.body, self.delay)
            db.store_quotes(conn, self.run_id, rows, fetched_at=response.received_at)
            outcome.bars = len(rows)
        return outcome

    # -- a batch (bulk quotes) ---------------------------------------------------------------------
    def process_unit(self, conn: psycopg.Connection[tuple[object, ...]],
                     unit: tuple[str, ...]) -> list[db.SymbolOutcome]:
        if self.source != "bulk":
            return super().process_unit(conn, unit)
        outcomes = [db.SymbolOutcome(s, self.function, None, started_at=_now()) for s in unit]
        if self.stop.is_set():
            return [self._skip(conn, o) for o in outcomes]
        attempt = Attempt()
        try:
            response = self.client.fetch(self.function, ",".join(unit), attempt, extra=self.params)
        except RunStopped as exc:
            if attempt.requests == 0:
                return [self._skip(conn, o) for o in outcomes]
            return self._fail_all(conn, outcomes, attempt, exc)
        except ExtractError as exc:
            return self._fail_all(conn, outcomes, attempt, exc)
        rows = {r.symbol: r for r in quote_rows(self.function, response.parsed.body, self.delay)}
        for i, outcome in enumerate(outcomes):
            outcome.requests = attempt.requests if i == 0 else 0  # the batch's requests count once
            outcome.finished_at = _now()
            if outcome.symbol in rows:
                outcome.status, outcome.bars = "succeeded", 1
            else:
                outcome.status, outcome.reason_code = "failed", "invalid_symbol"
                outcome.reason = "no quote in the bulk answer (unknown symbol?)"
                log.error("%s %s failed [invalid_symbol]: %s", self.function, outcome.symbol, outcome.reason)
        db.store_batch(conn, self.run_id, self.endpoint, outcomes, list(rows.values()), url=response.url,
                       requested_at=response.requested_at, received_at=response.received_at,
                       body=response.parsed.body)
        return outcomes

    def _fail_all(self, conn: psycopg.Connection[tuple[object, ...]], outcomes: list[db.SymbolOutcome],
                  attempt: Attempt, exc: ExtractError) -> list[db.SymbolOutcome]:
        for i, outcome in enumerate(outcomes):
            self._fail(outcome, attempt, exc)
            outcome.requests = attempt.requests if i == 0 else 0
            db.record_symbol(conn, self.run_id, outcome)
        return outcomes
