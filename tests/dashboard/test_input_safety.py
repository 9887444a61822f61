"""Portfolio input that cannot hurt (issue 15), through the real page on the pipeline-published
dataset (AppTest): a comma inside a number is refused with the accepted form, values beyond the
documented bounds are refused, every piece of user text reaches Streamlit's markdown escaped, the
problem list is capped, and the uploader carries the 1 MB limit. test_browser.py checks the same
in Chromium, where the markdown is really rendered and the server really refuses big uploads."""

from __future__ import annotations

from dashboard_helpers import unescaped
from datapipe_dashboard import holdings


def upload(at, name: str, data: bytes):  # type: ignore[no-untyped-def]
    at.file_uploader[0].upload(name, data, "text/csv")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {m.label: m.value for m in at.metric}


def test_a_comma_inside_a_number_is_refused_on_the_page(make_app, published) -> None:
    at = upload(make_app("portfolio", settings=published.settings), "mine.csv",
                b'symbol,shares,cost_basis\nIBM,"1,5",100\nMSFT,2,"1,500"\nXOM,3,300\n')
    warning = unescaped(at.warning[0].value)
    assert "2 row(s) of CSV mine.csv ignored" in warning
    assert ("CSV line 2: shares '1,5' contains a comma: write numbers like 1500 or 1.5"
            " (no thousands separator, a dot for decimals)") in warning
    assert "CSV line 3: cost_basis '1,500' contains a comma" in warning
    assert metrics(at)["Positions"] == "1"  # XOM only: nothing became 15 shares
    assert list(at.dataframe[-1].value["symbol"]) == ["XOM"]


def test_values_beyond_the_bounds_are_refused_on_the_page(make_app, published) -> None:
    at = upload(make_app("portfolio", settings=published.settings), "big.csv",
                b"symbol,shares,cost_basis\nIBM,1e308,100\nMSFT,2000000000,1\nXOM,1,1000000000001\nAAPL,2,100\n")
    warning = unescaped(at.warning[0].value)
    assert "CSV line 2: shares '1e308' is not a number" in warning
    assert "CSV line 3: shares 2000000000 is above the maximum 1000000000" in warning
    assert "CSV line 4: cost_basis 1000000000001 is above the maximum 1000000000000" in warning
    values = metrics(at)
    assert "inf" not in " ".join(values.values()).lower()
    assert values["Positions"] == "1"


PAYLOADS = (
    # user text that markdown would turn into formatting, links, HTML, maths, a colour, an emoji
    "**bold**",
    "www.x.io",
    "a@b.co",
    "[click](http://x.io)",
    "<img src=x onerror=1>",
    "$x^2$",
    ":red[red]",
    ":smile:",
)


def test_user_text_reaches_markdown_escaped(make_app, published) -> None:
    rows = "".join(f'MSFT,"{p}",1\n' for p in PAYLOADS)
    at = upload(make_app("portfolio", settings=published.settings), "**evil**_[x](y).csv",
                f"symbol,shares,cost_basis\n{rows}MSFT,1,100\n".encode())
    markdown = at.warning[0].value
    for payload in PAYLOADS:
        assert payload not in markdown  # never raw: markdown characters escaped, links broken
        assert f"shares '{payload}' is not a number" in unescaped(markdown)
    assert "**evil**" not in markdown and "CSV **evil**_[x](y).csv" in unescaped(markdown)
    assert markdown.startswith(f"**{len(PAYLOADS)} row(s) of CSV ")  # our own emphasis stays


def test_the_problem_list_is_capped(make_app, published) -> None:
    bad = "".join(f"ZZ{i:02d},1,1\n" for i in range(30))
    at = upload(make_app("portfolio", settings=published.settings), "many.csv",
                f"symbol,shares,cost_basis\n{bad}MSFT,1,100\n".encode())
    markdown = unescaped(at.warning[0].value)
    listed = [line for line in markdown.splitlines() if line.startswith("- ")]
    assert len(listed) == holdings.MAX_PROBLEMS_SHOWN + 1
    assert listed[0] == "- CSV line 2: unknown symbol 'ZZ00' (not in the published marts)"
    assert listed[-1] == f"- … and {30 - holdings.MAX_PROBLEMS_SHOWN} more not shown"
    assert "30 row(s) of CSV many.csv ignored" in markdown
    assert metrics(at)["Positions"] == "1"


def test_the_uploader_announces_the_one_megabyte_limit(make_app, published) -> None:
    at = make_app("portfolio", settings=published.settings)
    assert at.file_uploader[0].proto.max_upload_size_mb == holdings.MAX_UPLOAD_MB == 1
