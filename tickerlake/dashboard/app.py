"""tickerlake's dashboard: `make dashboard` (Streamlit on 127.0.0.1).

Three pages: Market (candles, volume, indicator overlays and panes, anomalies), Live (the running
stream's 1-minute bars, refreshing, with its lag and events/s) and Pipeline (freshness on the
exchange calendar, the DAGs' last runs, quarantine reasons, the load ledger). Every query is in
tickerlake/dashboard/queries.py. Streamlit was chosen over Dash or Superset because pages are
plain Python over the same settings and queries as the rest of the project, it needs no build
step and no metadata database of its own, and plotly draws the financial charts.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from tickerlake.core.settings import get_settings
from tickerlake.dashboard import charts, queries
from tickerlake.dashboard.queries import NoData

NO_DATA = "No data yet: run `make demo` (or the ohlcv_backfill, ohlcv_transform and warehouse_load DAGs)."


def market() -> None:
    settings = get_settings()
    st.title("Market")
    try:
        names = queries.symbols(settings)
    except NoData as exc:
        st.info(f"{NO_DATA} ({exc})")
        return
    if not names:
        st.info(NO_DATA)
        return
    left, middle, right = st.columns([2, 1, 3])
    wanted = st.query_params.get("symbol")  # /?symbol=AAPL links to a symbol's chart
    symbol = left.selectbox("Symbol", names, index=names.index(wanted) if wanted in names else 0)
    interval = middle.radio("Interval", ["1d", "1m"], horizontal=True, key="interval")
    span = queries.date_span(settings, symbol, interval)
    if span is None:
        st.info(f"No {interval} bars of {symbol} in the warehouse yet. {NO_DATA}")
        return
    lo, hi = span
    default_start = max(lo, hi - timedelta(days=180 if interval == "1d" else 2))
    picked = right.date_input("Sessions", (default_start, hi), min_value=lo, max_value=hi, key="range")
    start, end = (picked if isinstance(picked, tuple) and len(picked) == 2 else (default_start, hi))
    frame = queries.bars(settings, symbol, interval, start, end)
    marks = queries.anomalies(settings, symbol, interval, start, end)
    if frame.empty:
        st.info(f"No {interval} bars of {symbol} between {start} and {end}.")
        return
    st.plotly_chart(charts.market_chart(frame, marks, f"{symbol} {interval}"), use_container_width=True)
    st.caption(f"{len(frame):,} bars, {len(marks):,} anomalies "
               f"({', '.join(sorted(set(marks['kind'])) or ['none'])})")
    if not marks.empty:
        st.dataframe(marks, hide_index=True, use_container_width=True)


def live() -> None:
    settings = get_settings()
    st.title("Live")
    names = queries.live_symbols(settings)
    if not names:
        st.info("No live bars yet: start the stream (`stream_supervisor` DAG, or `make demo`).")
        return
    wanted = st.query_params.get("symbol")
    symbol = st.selectbox("Symbol", names, index=names.index(wanted) if wanted in names else 0)

    @st.fragment(run_every=5)
    def refreshing() -> None:
        status = queries.stream_status(settings)
        cols = st.columns(4)
        written = status.get("written_at")
        age = f"{datetime.now(UTC).timestamp() - written:.0f} s ago" if written else "never"
        cols[0].metric("Events/s", f"{status.get('events_per_second') or 0:,.0f}")
        cols[1].metric("Lag (records)", f"{sum((status.get('lag') or {}).values()):,}")
        cols[2].metric("Last progress", age)
        cols[3].metric("Late + quarantined", f"{(status.get('counters') or {}).get('late', 0):,} + "
                                             f"{(status.get('counters') or {}).get('malformed', 0):,}")
        frame = queries.live_bars(settings, symbol)
        if frame.empty:
            st.info(f"No live bars of {symbol} today (UTC).")
            return
        st.plotly_chart(charts.live_chart(frame, f"{symbol} live 1m"), use_container_width=True)
        st.caption(f"{len(frame)} bars, last {frame['window_start'].max()} (refreshes every 5 s)")

    refreshing()


def pipeline() -> None:
    settings = get_settings()
    st.title("Pipeline")
    st.subheader("Freshness (exchange calendar: weekends and holidays are never late)")
    try:
        fresh = queries.freshness(settings)
        st.table(pd.DataFrame([{"dataset": f.dataset, "latest session": f.latest,
                                    "sessions behind": "" if f.sessions_behind is None else str(f.sessions_behind),
                                    "status": ("no data" if f.latest is None else
                                               "on time" if not f.sessions_behind else "late")}
                                   for f in fresh]).set_index("dataset"))
    except NoData as exc:
        st.info(f"{NO_DATA} ({exc})")
    st.subheader("DAGs and their latest five runs")
    try:
        runs = queries.dag_runs(settings)
        if runs.empty:
            st.info("No DAGs known yet.")
        else:
            st.table(runs.set_index("dag_id"))
    except NoData:
        st.info("Airflow's run history is not readable yet: run any DAG once (`make demo`).")
    st.subheader("Quarantine by reason")
    reasons = queries.quarantine_reasons(settings)
    if reasons.empty:
        st.info("Nothing quarantined.")
    else:
        st.table(reasons.set_index("dataset"))
    st.subheader("Load ledger (warehouse_load; its last task is the consistency check)")
    try:
        st.table(queries.load_ledger(settings).set_index("dataset"))
    except NoData as exc:
        st.info(f"{NO_DATA} ({exc})")


def main() -> None:
    st.set_page_config(page_title="tickerlake", layout="wide")
    page = st.navigation([st.Page(market, title="Market", default=True),
                          st.Page(live, title="Live", url_path="live"),
                          st.Page(pipeline, title="Pipeline", url_path="pipeline")])
    page.run()


main()
