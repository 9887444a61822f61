"""Portfolio parsing and valuation (pure functions); the page itself is tested in test_pages.py."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
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
        "CSV line 5: shares 'abc' is not a number: write numbers like 1500 or 1.5",
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


# -- input that cannot hurt (issue 15) --------------------------------------------------------------

def test_a_comma_inside_a_number_is_refused_with_the_accepted_form() -> None:
    csv = (
        "symbol,shares,cost_basis\n"
        'IBM,"1,5",100\n'  # a decimal comma: must never become 15 shares
        'AAPL,2,"1,500"\n'  # a thousands separator
        'MSFT,"1,500.25",10\n'
        "IBM,1.5,1500\n"  # the accepted forms
    )
    parsed = holdings.parse_csv(csv.encode(), KNOWN)
    assert parsed.holdings == [holdings.Holding("IBM", 1.5, 1500.0)]
    assert messages(parsed) == [
        "CSV line 2: shares '1,5' contains a comma: write numbers like 1500 or 1.5"
        " (no thousands separator, a dot for decimals)",
        "CSV line 3: cost_basis '1,500' contains a comma: write numbers like 1500 or 1.5"
        " (no thousands separator, a dot for decimals)",
        "CSV line 4: shares '1,500.25' contains a comma: write numbers like 1500 or 1.5"
        " (no thousands separator, a dot for decimals)",
    ]
    # the editable table goes through the same rule
    table = holdings.parse_table(pd.DataFrame([{"symbol": "IBM", "shares": "1,5", "cost_basis": 100.0}]), KNOWN)
    assert table.holdings == [] and "contains a comma" in messages(table)[0]


@pytest.mark.parametrize(
    ("shares", "cost", "problem"),
    [
        ("1e308", "100", "shares '1e308' is not a number: write numbers like 1500 or 1.5"),
        ("inf", "100", "shares 'inf' is not a number: write numbers like 1500 or 1.5"),
        ("NaN", "100", "shares 'NaN' is not a number: write numbers like 1500 or 1.5"),
        ("0x10", "100", "shares '0x10' is not a number: write numbers like 1500 or 1.5"),
        ("1_000", "100", "shares '1_000' is not a number: write numbers like 1500 or 1.5"),
        ("1000000001", "100", "shares 1000000001 is above the maximum 1000000000"),
        ("10", "1000000000001", "cost_basis 1000000000001 is above the maximum 1000000000000"),
        ("9" * 400, "100", "shares '999999999999999999999999…' is above the maximum 1000000000"),
    ],
)
def test_shares_and_cost_have_bounds(shares: str, cost: str, problem: str) -> None:
    parsed = holdings.parse_csv(f"symbol,shares,cost_basis\nIBM,{shares},{cost}\n".encode(), KNOWN)
    assert parsed.holdings == []
    assert messages(parsed) == [f"CSV line 2: {problem}"]


def test_the_bounds_themselves_are_accepted() -> None:
    csv = (
        f"symbol,shares,cost_basis\nIBM,{holdings.MAX_SHARES},{holdings.MAX_COST_BASIS}\n"
        "AAPL,0.000001,0\nMSFT,$12.50,$1000.5\n"
    )
    parsed = holdings.parse_csv(csv.encode(), KNOWN)
    assert parsed.problems == []
    assert parsed.holdings == [
        holdings.Holding("IBM", float(holdings.MAX_SHARES), float(holdings.MAX_COST_BASIS)),
        holdings.Holding("AAPL", 0.000001, 0.0),
        holdings.Holding("MSFT", 12.5, 1000.5),
    ]


def test_table_floats_beyond_the_bounds_are_refused() -> None:
    frame = pd.DataFrame([
        {"symbol": "IBM", "shares": 1e308, "cost_basis": 1.0},
        {"symbol": "AAPL", "shares": float("inf"), "cost_basis": 1.0},
        {"symbol": "MSFT", "shares": 1.0, "cost_basis": 1e13},
    ])
    parsed = holdings.parse_table(frame, KNOWN)
    assert parsed.holdings == []
    assert messages(parsed) == [
        "table row 1: shares 1e+308 is above the maximum 1000000000",
        "table row 2: shares inf is not a finite number",
        "table row 3: cost_basis 10000000000000 is above the maximum 1000000000000",
    ]


def test_echoed_text_is_shortened_and_kept_on_one_line() -> None:
    long_symbol = "X" * 200
    csv = f'symbol,shares,cost_basis\n{long_symbol},1,1\n"A\nB",1,1\n'
    parsed = holdings.parse_csv(csv.encode(), KNOWN)
    first, second = messages(parsed)
    assert first == f"CSV line 2: unknown symbol '{'X' * 24}…' (not in the published marts)"
    assert second == "CSV line 3: unknown symbol 'A B' (not in the published marts)"


def test_the_upload_limit_is_one_megabyte_everywhere() -> None:
    from datapipe_dashboard import cli

    assert holdings.MAX_UPLOAD_MB == 1
    assert holdings.MAX_CSV_BYTES == 1024 * 1024  # Streamlit's megabyte
    assert "--server.maxUploadSize=1" in cli.streamlit_argv("127.0.0.1", 8501)
    too_big = b"symbol,shares,cost_basis\n" + b"IBM,1,1\n" * (holdings.MAX_CSV_BYTES // 8)
    assert messages(holdings.parse_csv(too_big, KNOWN)) == ["CSV file: larger than 1 MB"]
