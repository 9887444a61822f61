"""The sandbox Alpha Vantage API: deterministic synthetic market data and injectable faults."""
