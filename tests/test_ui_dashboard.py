"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the test
stack's Streamlit server.

Runs after the streaming tests (pytest takes the files in name order): the Live page shows the
1-minute bars they left in `realtime.bars_1m`. Set TICKERLAKE_SCREENSHOTS_DIR to keep a
screenshot of each page (docs/img/ holds the ones in docs/operations.md).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import ALERT_SYMBOL

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DAG_IDS = sorted(p.stem for p in (Path(__file__).parents[1] / "dags").glob("*.py") if p.stem != "__init__")


@pytest.fixture(scope="module")
def browser_page(monitoring, market_data, settings):
    from playwright.sync_api import sync_playwright

    from tickerlake.dev.airflow_local import run_airflow

    # Every DAG in the metadata database, as the scheduler's DAG processor would leave it.
    done = run_airflow(["dags", "reserialize"], settings, capture=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.errors = errors  # type: ignore[attr-defined]
        yield page
        browser.close()


def open_market(page, settings, query: str = ""):
    page.errors.clear()
    page.goto(f"http://127.0.0.1:{settings.monitoring.dashboard_port}/{query}")
    page.wait_for_selector("[data-testid='stApp']", timeout=60_000)


def go_to(page, settings, title: str) -> None:
    """Follow the sidebar's link, as a person does. (A deep link such as /pipeline works too,
    but Streamlit's front end first probes /pipeline/_stcore/health, a 404 it logs and ignores.)"""
    open_market(page, settings)
    page.locator("[data-testid='stSidebarNavLink']", has_text=title).click()
    page.get_by_role("heading", name=title).wait_for(timeout=60_000)


def screenshot(page, name: str) -> None:
    folder = os.environ.get("TICKERLAKE_SCREENSHOTS_DIR")
    if folder:
        page.screenshot(path=str(Path(folder) / f"dashboard-{name}.png"), full_page=True)


def plotly_traces(page) -> list[dict]:
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    return page.evaluate("""() => [...document.querySelector('.js-plotly-plot').data].map(t =>
        ({type: t.type || 'scatter', name: t.name, n: (t.x || []).length}))""")


def test_the_market_page_draws_the_symbols_candles_and_marks_its_anomalies(browser_page, settings, market_data):
    from tickerlake.warehouse.postgres import PostgresWarehouse

    open_market(browser_page, settings, f"?symbol={ALERT_SYMBOL}")
    traces = plotly_traces(browser_page)
    with PostgresWarehouse(settings.pg) as warehouse:
        _, rows = warehouse.query_table(
            f"SELECT count(*) FROM warehouse.bars_daily WHERE symbol = '{ALERT_SYMBOL}'")
    candles = [t for t in traces if t["type"] == "candlestick"]
    assert candles and candles[0]["n"] == rows[0][0] > 0
    assert {"SMA 20", "Bollinger upper", "RSI 14", "MACD", "Volume"} <= {t["name"] for t in traces}
    anomalies = [t for t in traces if t["name"] == "anomaly"]
    assert anomalies and anomalies[0]["n"] >= 1
    assert browser_page.get_by_text(f"{ALERT_SYMBOL} 1d").count() >= 1
    screenshot(browser_page, "market")
    assert browser_page.errors == []


def test_the_pipeline_page_lists_every_dag_and_the_quarantine_reasons(browser_page, settings):
    go_to(browser_page, settings, "Pipeline")
    # the page renders top to bottom as its queries return: wait for its last section's table
    browser_page.get_by_text("Load ledger").wait_for(timeout=60_000)
    browser_page.wait_for_function("document.querySelectorAll('[data-testid=stMain] table').length >= 4",
                                   timeout=60_000)
    text = browser_page.inner_text("[data-testid='stMain']")
    missing = [dag for dag in DAG_IDS if dag not in text]
    assert not missing, text[:3000]
    quarantine = text.split("Quarantine by reason", 1)[1]
    assert "high < low" in quarantine and "negative volume" in quarantine, quarantine[:2000]  # the bad rows
    assert "bars_daily" in text and "load ledger" in text.lower()
    screenshot(browser_page, "pipeline")
    assert browser_page.errors == []


def test_the_live_page_draws_the_streams_minute_bars(browser_page, settings):
    go_to(browser_page, settings, "Live")
    traces = plotly_traces(browser_page)
    candles = [t for t in traces if t["type"] == "candlestick"]
    assert candles and candles[0]["n"] > 0
    assert browser_page.get_by_text("Events/s").count() == 1
    screenshot(browser_page, "live")
    assert browser_page.errors == []


def test_the_dashboards_role_cannot_write(settings):
    import psycopg

    from tickerlake.core.clients import pg_connect

    insert = "INSERT INTO warehouse.dim_symbol (symbol) VALUES ('NOPE')"
    with pg_connect(settings.pg, as_analyst=True, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # the role's sessions are read-only
            conn.execute(insert)
        conn.execute("SET default_transaction_read_only = off")  # and without that: no privilege
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(insert)
