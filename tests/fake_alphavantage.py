"""FAKE Alpha Vantage: a loopback HTTP server answering with constructed replies shaped like the
API's (https://www.alphavantage.co/documentation/), because no test may reach the network.

It serves `TIME_SERIES_DAILY_ADJUSTED`, `TIME_SERIES_DAILY` and `TIME_SERIES_INTRADAY` for the
symbols it is given (prices derived from the date, so a test can check values), answers an
unknown symbol and a wrong key the way Alpha Vantage does, and can be told to throttle (`Note`)
the next N requests or to call the adjusted series premium. It records every query it received.
"""
from __future__ import annotations

import json
import threading
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

API_KEY = "test-av-key-7f3e9c1d"  # the fake's only valid key (a test greps logs for it)
# The replies' wording as Alpha Vantage sends it (each links to the premium page).
THROTTLE_NOTE = ("Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and "
                 "500 calls per day. Please visit https://www.alphavantage.co/premium/ if you would like to target "
                 "a higher API call frequency.")
DAILY_LIMIT = ("Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. Please "
               "subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly remove "
               "all daily rate limits.")
INVALID_CALL = ("Invalid API call. Please retry or visit the documentation (https://www.alphavantage.co/"
                "documentation/) for TIME_SERIES_DAILY_ADJUSTED.")
BAD_KEY = "the parameter apikey is invalid or missing. Please claim your free API key on (https://www.alphavantage.co/support/#api-key)."
PREMIUM = ("Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any of the "
           "premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium endpoints")


def price(symbol: str, day: date) -> float:
    """A deterministic close: tests recompute it."""
    return round(50 + (sum(map(ord, symbol)) % 40) + (day.toordinal() % 17) * 0.5, 4)


def daily_series(symbol: str, first: date, last: date, adjusted: bool) -> dict:
    series = {}
    day = last
    while day >= first:  # newest first, as the API sends them
        if day.weekday() < 5:
            close = price(symbol, day)
            bar = {"1. open": f"{close - 0.25:.4f}", "2. high": f"{close + 1:.4f}",
                   "3. low": f"{close - 1:.4f}", "4. close": f"{close:.4f}"}
            if adjusted:
                bar |= {"5. adjusted close": f"{close * 0.98:.4f}", "6. volume": str(1000 + day.day),
                        "7. dividend amount": "0.0000", "8. split coefficient": "1.0"}
            else:
                bar |= {"5. volume": str(1000 + day.day)}
            series[day.isoformat()] = bar
        day -= timedelta(days=1)
    return series


def intraday_series(symbol: str, month: str) -> dict:
    first = date.fromisoformat(f"{month}-01")
    series = {}
    day = first
    while day.month == first.month:
        if day.weekday() < 5:
            for minute in range(3):  # three bars a session are enough for a test
                stamp = datetime(day.year, day.month, day.day, 9, 30 + minute)
                close = price(symbol, day) + minute * 0.01
                series[stamp.strftime("%Y-%m-%d %H:%M:%S")] = {
                    "1. open": f"{close:.4f}", "2. high": f"{close + 0.05:.4f}", "3. low": f"{close - 0.05:.4f}",
                    "4. close": f"{close:.4f}", "5. volume": "100"}
        day += timedelta(days=1)
    return series


class FakeAlphaVantage:
    def __init__(self, symbols: dict[str, tuple[date, date]]) -> None:
        self.symbols = symbols  # symbol -> (first, last) day of its history
        self.queries: list[dict[str, str]] = []
        self.throttle_next = 0
        self.throttle_only: str | None = None  # throttle this symbol's requests only
        self.daily_limit_reached = False
        self.adjusted_is_premium = False
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                body = json.dumps(fake.reply(query)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # the URL carries the key: keep it out of logs
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/query"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeAlphaVantage":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reply(self, query: dict[str, str]) -> dict:
        with self._lock:
            self.queries.append(query)
            if self.throttle_next > 0 and self.throttle_only in (None, query.get("symbol")):
                self.throttle_next -= 1
                return {"Note": THROTTLE_NOTE}
            if self.daily_limit_reached:
                return {"Information": DAILY_LIMIT}
        if query.get("apikey") != API_KEY:
            return {"Error Message": BAD_KEY}
        function, symbol = query.get("function"), query.get("symbol", "")
        if symbol not in self.symbols:
            return {"Error Message": INVALID_CALL}
        first, last = self.symbols[symbol]
        meta = {"1. Information": "constructed by tests/fake_alphavantage.py", "2. Symbol": symbol}
        if function == "TIME_SERIES_DAILY_ADJUSTED":
            if self.adjusted_is_premium:
                return {"Information": PREMIUM}
            return {"Meta Data": meta | {"5. Time Zone": "US/Eastern"},
                    "Time Series (Daily)": daily_series(symbol, first, last, adjusted=True)}
        if function == "TIME_SERIES_DAILY":
            return {"Meta Data": meta | {"5. Time Zone": "US/Eastern"},
                    "Time Series (Daily)": daily_series(symbol, first, last, adjusted=False)}
        if function == "TIME_SERIES_INTRADAY":
            return {"Meta Data": meta | {"4. Interval": "1min", "6. Time Zone": "US/Eastern"},
                    "Time Series (1min)": intraday_series(symbol, query["month"])}
        return {"Error Message": INVALID_CALL}
