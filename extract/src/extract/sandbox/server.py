"""`extract sandbox`: an Alpha Vantage-compatible HTTP server (stdlib http.server, threaded).

Endpoints
  GET  /query?function=...&symbol=...&outputsize=...&apikey=...   every function of extract.endpoints
  GET  /healthz                   200 {"status": "ok"}
  GET  /_sandbox/requests         every /query request seen: n, t (epoch seconds), function, symbol, ...
  DELETE /_sandbox/requests       forget them and restart the request counter (and `times` counters)
  GET  /_sandbox/faults           the active faults
  POST /_sandbox/faults           replace them: {"faults": ["throttle?every=3", ...], "unknown_symbols": [...]}
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from datapipe_common.calendar import NEW_YORK, nyse

from extract import endpoints
from extract.sandbox.data import PayloadCache, SandboxRequest, partial_bar
from extract.sandbox.faults import Fault, FaultPlan, FaultSpecError, parse_faults

log = logging.getLogger("extract.sandbox")

KNOWN_SYMBOL = re.compile(r"^[A-Z]{1,5}(\.[A-Z]{1,4})?$")
PREMIUM_FUNCTIONS = frozenset({"TIME_SERIES_DAILY_ADJUSTED", "TIME_SERIES_INTRADAY_EXTENDED", "REALTIME_BULK_QUOTES"})

TEXT_THROTTLE_INFORMATION = (
    "Thank you for using Alpha Vantage! Please consider spreading out your free API requests more sparingly "
    "(1 request per second). You may subscribe to any of the premium plans at https://www.alphavantage.co/premium/ "
    "to lift the free key rate limit (25 requests per day), raise the per-second burst limit, and instantly unlock "
    "all premium endpoints"
)
TEXT_THROTTLE_NOTE = (
    "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and 500 calls per day. "
    "Please visit https://www.alphavantage.co/premium/ if you would like to target a higher API call frequency."
)
TEXT_QUOTA = (
    "We have detected your API key as {key} and our standard API rate limit is 25 requests per day. "
    "Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly remove "
    "all daily rate limits."
)
TEXT_PREMIUM = (
    "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any of the premium plans "
    "at https://www.alphavantage.co/premium/ to instantly unlock all premium endpoints"
)
# a free key asking for a premium parameter value (real text, 2025-2026)
TEXT_PREMIUM_FEATURE = (
    "Thank you for using Alpha Vantage! The outputsize=full parameter value is a premium feature for the {function} "
    "endpoint. You may subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly "
    "unlock all premium features"
)
TIERS = ("premium", "free")
TEXT_DEMO = (
    "The **demo** API key is for demo purposes only. Please claim your free API key at "
    "(https://www.alphavantage.co/support/#api-key) to explore our full API offerings. It takes fewer than 20 seconds."
)
TEXT_INVALID_CALL = (
    "Invalid API call. Please retry or visit the documentation (https://www.alphavantage.co/documentation/) "
    "for {function}."
)
TEXT_BAD_KEY = (
    "the parameter apikey is invalid or missing. Please claim your free API key on "
    "(https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."
)
HTML_503 = (
    b"<!DOCTYPE html>\n<html><head><title>503 Service Temporarily Unavailable</title></head>\n"
    b"<body><center><h1>503 Service Temporarily Unavailable</h1></center><hr><center>nginx</center></body></html>\n"
)


@dataclass
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    as_of: dt.date | None = None
    unknown_symbols: frozenset[str] = frozenset()
    faults: list[Fault] = field(default_factory=list)
    require_key: str | None = None
    intraday: bool = False  # serve the session in progress as a partial bar
    now: dt.datetime | None = None  # pin the clock (US/Eastern); default: the real clock
    cache_bodies: int = 64
    tier: str = "premium"  # the tier of every key: "free" refuses outputsize=full (docs/extract.md)


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay_s: float = 0.0
    reset: bool = False


def _json(obj: Any, status: int = 200) -> Answer:
    return Answer(status, orjson.dumps(obj))


class SandboxState:
    """Everything the handler threads share: data cache, faults, request log."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.cache = PayloadCache(max_bodies=config.cache_bodies)
        self.plan = FaultPlan(list(config.faults))
        self.unknown = set(config.unknown_symbols)
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []

    def now(self) -> dt.datetime:
        return (self.config.now or dt.datetime.now(tz=NEW_YORK)).astimezone(NEW_YORK)

    def as_of(self) -> dt.date:
        """The last bar served: the last session on or before a pinned `as_of`, else the latest
        session closed by now (the real API has the final bar right after the close)."""
        if self.config.as_of is not None:
            return nyse().session_on_or_before(self.config.as_of)
        return nyse().latest_completed_session(self.now(), delay=dt.timedelta(0))

    def session_in_progress(self) -> tuple[dt.date, float] | None:
        """(today, fraction of the session elapsed) while the market is open, in intraday mode."""
        if not self.config.intraday or self.config.as_of is not None:
            return None
        now = self.now()
        calendar = nyse()
        if not calendar.is_open(now):
            return None
        session = calendar.session(now.date())  # closes at 13:00 on early-close days
        return now.date(), (now - session.open_at) / (session.close_at - session.open_at)

    def is_known(self, symbol: str) -> bool:
        return bool(KNOWN_SYMBOL.match(symbol)) and symbol not in self.unknown

    def answer_query(self, params: dict[str, str]) -> Answer:
        started = time.time()
        function = params.get("function", "").upper()
        symbol = params.get("symbol", "").upper()
        output_size = params.get("outputsize", "compact").lower()
        apikey = params.get("apikey")
        n, fault = self.plan.next(function, symbol)
        with self._lock:
            self.requests.append(
                {
                    "n": n,
                    "t": started,
                    "function": function,
                    "symbol": symbol,
                    "outputsize": output_size,
                    "has_key": bool(apikey),
                    "fault": fault.describe() if fault else None,
                }
            )
        if fault is not None:
            return self.fault_answer(fault, function, symbol, output_size, apikey)
        return self.normal_answer(function, symbol, output_size, apikey)

    def fault_answer(self, fault: Fault, function: str, symbol: str, output_size: str, apikey: str | None) -> Answer:
        kind = fault.kind
        if kind == "throttle":
            key = "Note" if fault.style == "note" else "Information"
            return _json({key: TEXT_THROTTLE_NOTE if key == "Note" else TEXT_THROTTLE_INFORMATION})
        if kind == "error":
            return _json({"Error Message": TEXT_INVALID_CALL.format(function=function or "this function")})
        if kind == "quota":
            return _json({"Information": TEXT_QUOTA.format(key=apikey or "(none)")})
        if kind == "premium":
            return _json({"Information": TEXT_PREMIUM})
        if kind == "demo":
            return _json({"Information": TEXT_DEMO})
        if kind == "html503":
            return Answer(503, HTML_503, "text/html")
        if kind == "http429":
            return Answer(429, b'{"Information": "Too Many Requests"}')
        if kind == "http500":
            return Answer(500, b'{"error": "internal server error"}')
        if kind == "empty":
            return _json({})
        if kind == "reset":
            return Answer(reset=True)
        if kind == "noseries":
            normal = self.normal_answer(function, symbol, output_size, apikey)
            body = orjson.loads(normal.body) if normal.status == 200 else {}
            meta = body.get("Meta Data") if isinstance(body, dict) else None
            return _json({"Meta Data": meta} if meta is not None else {})
        normal = self.normal_answer(function, symbol, output_size, apikey)
        if kind == "truncate":
            normal.body = normal.body[: max(1, len(normal.body) // 2)]
        elif kind == "slow":
            normal.delay_s = fault.seconds
        return normal

    def normal_answer(self, function: str, symbol: str, output_size: str, apikey: str | None) -> Answer:
        if self.config.require_key is not None and apikey != self.config.require_key:
            return _json({"Error Message": TEXT_BAD_KEY})
        if function in PREMIUM_FUNCTIONS:
            return _json({"Information": TEXT_PREMIUM})
        endpoint = endpoints.find(function)
        if endpoint is None:
            if not function:
                return _json({"Error Message": "the parameter function is missing"})
            return _json({"Error Message": f"This API function ({function}) does not exist."})
        if apikey == "demo" and symbol != "IBM":
            return _json({"Information": TEXT_DEMO})
        if not symbol or not self.is_known(symbol):
            if endpoint.unknown_symbol is not None:
                return Answer(200, endpoint.unknown_symbol)
            return _json({"Error Message": TEXT_INVALID_CALL.format(function=function)})
        size = ("full" if output_size == "full" else "compact") if endpoint.output_sizes else ""
        if size == "full" and self.config.tier == "free":
            return _json({"Information": TEXT_PREMIUM_FEATURE.format(function=function)})
        live = self.session_in_progress() if endpoint.live else None
        if live is not None:
            day, fraction = live
            series = self.cache.series(symbol, day)
            request = SandboxRequest(symbol, day, size, series, partial_bar(series, fraction))
            return Answer(200, endpoint.sandbox(request))
        return Answer(200, self.cache.body(function, symbol, self.as_of(), size, endpoint.sandbox))

    def admin(self, method: str, path: str, body: bytes) -> Answer:
        if path == "/_sandbox/requests":
            if method == "GET":
                with self._lock:
                    return _json({"requests": list(self.requests)})
            if method == "DELETE":
                with self._lock:
                    self.requests.clear()
                self.plan.reset()
                return _json({"status": "reset"})
        if path == "/_sandbox/faults":
            if method == "GET":
                return _json(
                    {"faults": [f.describe() for f in self.plan.faults], "unknown_symbols": sorted(self.unknown)}
                )
            if method == "POST":
                try:
                    doc = orjson.loads(body or b"{}")
                    faults = parse_faults(list(doc.get("faults", [])))
                except (orjson.JSONDecodeError, FaultSpecError, AttributeError, TypeError) as exc:
                    return _json({"error": f"bad fault configuration: {exc}"}, 400)
                self.plan.replace(faults)
                if "unknown_symbols" in doc:
                    self.unknown = {str(s).upper() for s in doc["unknown_symbols"]}
                return _json({"faults": [f.describe() for f in faults], "unknown_symbols": sorted(self.unknown)})
        return _json({"error": f"no such endpoint: {method} {path}"}, 404)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "datapipe-sandbox/0.1"
    state: SandboxState  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:
        # The default access log would print the query string, API key included: log without it.
        log.debug("%s %s", self.command, urlsplit(self.path).path)

    def _send(self, answer: Answer) -> None:
        if answer.delay_s:
            time.sleep(answer.delay_s)
        if answer.reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/healthz":
            self._send(_json({"status": "ok"}))
        elif parts.path == "/query":
            params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            self._send(self.state.answer_query(params))
        else:
            self._send(self.state.admin("GET", parts.path, b""))

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        self._send(self.state.admin("POST", urlsplit(self.path).path, self._body()))

    def do_DELETE(self) -> None:
        self._send(self.state.admin("DELETE", urlsplit(self.path).path, self._body()))

    def handle(self) -> None:
        # the client went away, or the `reset` fault closed the connection on purpose
        with contextlib.suppress(OSError, ValueError):
            super().handle()

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def make_server(config: SandboxConfig) -> tuple[SandboxServer, SandboxState]:
    state = SandboxState(config)
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = SandboxServer((config.host, config.port), handler)
    return server, state


def serve(config: SandboxConfig) -> None:
    server, state = make_server(config)
    faults = ", ".join(f.describe() for f in config.faults) or "none"
    log.info(
        "sandbox Alpha Vantage API on http://%s:%d/query (%s keys, last completed session %s%s, faults: %s)",
        config.host,
        server.server_address[1],
        config.tier,
        state.as_of(),
        ", intraday partial bars" if config.intraday else "",
        faults,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
