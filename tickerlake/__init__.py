"""tickerlake: configuration, names and clients shared by DAGs, Spark jobs and ingestion.

DAGs, Spark jobs and ingestion code import from here and never read environment variables
themselves: `tickerlake.core.settings.get_settings()` is the one source of configuration.
"""
