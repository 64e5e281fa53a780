"""Market-data sources behind one interface (`MarketDataSource`), all returning `OHLCV` frames."""
from ingestion.sources.base import MarketDataSource, SourceError, SourceName, SourceUnavailable, source_for

__all__ = ["MarketDataSource", "SourceError", "SourceName", "SourceUnavailable", "source_for"]
