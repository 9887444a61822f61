"""Portfolio parsing and valuation (pure functions); the page itself is tested in test_pages.py."""

from __future__ import annotations

from datetime import date

import pandas as pd
from datapipe_dashboard import holdings

KNOWN = {"AAPL", "IBM", "MSFT"}


def messages(parsed: holdings.Parsed) -> list[str]:
    return [str(p) for p in parsed.problems]


def test_valid_csv_any_column_order_and_bom() -> None:
    parsed = holdings.parse_csv("\ufeffShares,symbol,cost_basis\n10,ibm,1500\n\n2.5,AAPL,$400\n".encode(), KNOWN)
    assert parsed.problems == []
    assert parsed.holdings == [holdings.Holding("IBM", 10.0, 1500.0), holdings.Holding("AAPL", 2.5, 400.0)]


def test_each_bad_row_is_named_and_the_rest_is_kept() -> None:
    csv = (
        "symbol,shares,cost_basis\n"
        "IBM,10,1500\n"
        "NOPE,5,100\n"
        "AAPL,-3,100\n"
        "MSFT,abc,100\n"
        ",1,1\n"
        "MSFT,1\n"
        "MSFT,2,-1\n"
        "MSFT,0,10\n"
        "AAPL,1,\n"
        "MSFT,4,800\n"
    )
    parsed = holdings.parse_csv(csv.encode(), KNOWN)
    assert parsed.holdings == [holdings.Holding("IBM", 10.0, 1500.0), holdings.Holding("MSFT", 4.0, 800.0)]
    assert messages(parsed) == [
        "CSV line 3: unknown symbol 'NOPE' (not in the published marts)",
        "CSV line 4: shares -3 is negative",
        "CSV line 5: shares 'abc' is not a number",
        "CSV line 6: symbol is empty",
        "CSV line 7: expected 3 fields (symbol,shares,cost_basis), got 2",
        "CSV line 8: cost_basis -1 is negative",
        "CSV line 9: shares is 0 (leave the row out instead)",
        "CSV line 10: cost_basis is missing",
    ]


def test_malformed_files() -> None:
    assert messages(holdings.parse_csv(b"ticker,qty\nIBM,1\n", KNOWN)) == [
        "CSV line 1: header must be symbol,shares,cost_basis; got ticker,qty"
    ]
    assert messages(holdings.parse_csv(b"\xff\xfe\x00garbage", KNOWN))[0].startswith("CSV file: not UTF-8 text")
    assert messages(holdings.parse_csv(b"", KNOWN)) == ["CSV file: empty; expected the header symbol,shares,cost_basis"]
    assert messages(holdings.parse_csv(b"symbol,shares,cost_basis\n", KNOWN)) == [
        "CSV file: has a header but no holdings"]


def test_table_rows_are_numbered_and_blank_rows_ignored() -> None:
    frame = pd.DataFrame(
        [
            {"symbol": "IBM", "shares": 1.0, "cost_basis": 100.0},
            {"symbol": None, "shares": None, "cost_basis": None},
            {"symbol": "AAPL", "shares": -1.0, "cost_basis": 5.0},
        ]
    )
    parsed = holdings.parse_table(frame, KNOWN)
    assert parsed.holdings == [holdings.Holding("IBM", 1.0, 100.0)]
    assert messages(parsed) == ["table row 3: shares -1 is negative"]


def test_valuation_and_value_over_time() -> None:
    pos = holdings.positions([holdings.Holding("IBM", 10, 1000), holdings.Holding("AAPL", 2, 300),
                              holdings.Holding("IBM", 5, 500)])
    assert pos.to_dict("records") == [
        {"symbol": "AAPL", "shares": 2.0, "cost_basis": 300.0},
        {"symbol": "IBM", "shares": 15.0, "cost_basis": 1500.0},
    ]
    val = holdings.valuation(pos, {"IBM": 110.0, "AAPL": 140.0}, {"IBM": "TECH", "AAPL": "TECH"})
    tot = holdings.totals(val)
    assert tot == {"value": 1930.0, "cost": 1800.0, "pl": 130.0, "pl_pct": 130 / 1800 * 100}
    ibm = val.set_index("symbol").loc["IBM"]
    assert (ibm["market_value"], ibm["pl"]) == (1650.0, 150.0)
    closes = pd.DataFrame(
        [
            ("IBM", date(2026, 1, 2), 100.0), ("IBM", date(2026, 1, 5), 101.0), ("AAPL", date(2026, 1, 5), 150.0),
            ("IBM", date(2026, 1, 6), 102.0),  # AAPL missing on the 6th: carried forward
        ],
        columns=["symbol", "trade_date", "close"],
    )
    series = holdings.value_over_time(pos, closes)
    assert list(series.index) == [date(2026, 1, 5), date(2026, 1, 6)]
    assert list(series.values) == [15 * 101 + 2 * 150, 15 * 102 + 2 * 150]
