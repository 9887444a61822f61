"""Alpha Vantage extractor into the warehouse `raw` schema, and a sandbox Alpha Vantage API."""

__version__ = "0.1.0"
