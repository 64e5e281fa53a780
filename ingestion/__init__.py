"""Ingestion: market-data sources (yfinance, synthetic, CSV) and the Kafka producer."""
