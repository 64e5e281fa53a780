"""The stream controller: starts, watches and stops the streaming lane's processes (the workers
themselves live in ingestion/ and spark_jobs/ and are started by module name, never imported)."""
