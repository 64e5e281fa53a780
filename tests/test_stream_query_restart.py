"""The stream job's in-process restart of a failed query: what it logs as the reason (the root
cause, not py4j's wrapping). The restart itself runs under real faults in tests/test_chaos.py."""
from __future__ import annotations

from spark_jobs.stream_ticks import failure_reason

# The shape of a foreachBatch failure while Postgres restarts (cut from a chaos run's job log).
POSTGRES_RESTART = """py4j.Py4JException: An exception was raised by the Python Proxy. Return Message: \
Traceback (most recent call last):
  File "/work/main/spark_jobs/stream_ticks.py", line 307, in __call__
    .options(**_snapshot_options({**properties, MAX_EVENT_TIME: str(new_max)})).append())
py4j.protocol.Py4JJavaError: An error occurred while calling o1793.append.
: org.apache.iceberg.jdbc.UncheckedSQLException: Failed to get table realtime.ticks from catalog lake
\tat org.apache.iceberg.jdbc.JdbcTableOperations.doRefresh(JdbcTableOperations.java:80)
Caused by: org.postgresql.util.PSQLException: FATAL: terminating connection due to administrator command
\tat org.postgresql.core.v3.QueryExecutorImpl.receiveErrorResponse(QueryExecutorImpl.java:2725)
"""


def test_the_logged_reason_is_the_root_cause_not_py4js_wrapping():
    assert failure_reason(POSTGRES_RESTART) == ("org.postgresql.util.PSQLException: FATAL: terminating "
                                                "connection due to administrator command")


def test_a_python_error_in_the_batch_is_named_with_its_message():
    text = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad price "abc"\n'
    assert failure_reason(text) == 'ValueError: bad price "abc"'


def test_text_without_an_exception_line_gives_no_reason():
    assert failure_reason("the query stopped") == ""
