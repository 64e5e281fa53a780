"""The core: settings, names, dataset declarations, errors, clients, the Spark session builder,
Iceberg helpers, the market calendar, S3 listing, processes, health checks. Imports nothing else of
the project (an import-linter contract in pyproject.toml)."""
