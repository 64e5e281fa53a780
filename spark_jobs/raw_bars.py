"""Read and check one symbol's raw OHLCV objects: pyarrow and numpy, no Spark.

The transform runs this in its Python workers, one symbol at a time, where the symbol's rows go
through the indicators next (spark_jobs/transform_bars.py). Parsing and checking the CSV in
Spark's JVM cost 14.5 of the job's 41.6 s at 1M minute bars; pyarrow's CSV reader and numpy's
vectorised rules do it in the worker that needs the rows anyway, with no shuffle between.

The rules, in order (the first that fails names the row's `reason`):

- a line that is not 11 fields (another separator, a stray comma or quote) is malformed; lines of
  only white space or control characters are skipped, and so is the first line (the header);
- the symbol: present, valid (`SYMBOL_PATTERN`), the object's own (`symbol=` in its key);
  the source present; the timestamp present and ISO 8601 (no offset: UTC);
- each number present where required (open, high, low, close, volume), parsable, finite, and
  the volume a 64-bit integer;
- the bar's session (its time in its symbol's exchange's zone) the object's date or month;
- no negative price or volume, high >= low, and open/close inside [low, high] up to
  `OHLC_REPAIR_TOLERANCE` of the high (low): within it the range is widened (`repair`).

Quotes are not special: tickerlake's raw CSV never quotes a valid value (no symbol, source,
timestamp or number holds a comma), and a stray quote then spoils its own line only, not every
line up to the next quote. Invalid UTF-8 is read with replacement characters.
"""
from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from tickerlake.core.datasets import OHLCV_COLUMNS
from tickerlake.core.market import exchange_of
from tickerlake.core.names import RAW_SPAN_PATTERN, SYMBOL_PATTERN

PRICES = ("open", "high", "low", "close", "adj_close")
NUMBERS = (*PRICES, "volume", "dividends", "stock_splits")
REQUIRED = ("open", "high", "low", "close", "volume")
# Open or close above the high (below the low) by at most this share of it: the bar is kept with
# its range widened (recorded in processed/repairs/); by more: quarantined (docs/batch.md).
OHLC_REPAIR_TOLERANCE = 0.01

_BLANK = "".join(map(chr, range(33)))  # what a skipped line may hold: white space, control characters
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE)
_SPAN = re.compile(RAW_SPAN_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Sessions outside these years are on no raw object's date (the calendars start in 1980): their
# rows fail the session rule without a time-zone conversion pandas cannot do (nanoseconds).
_SANE = (np.datetime64("1900-01-01", "us").astype(np.int64), np.datetime64("2200-01-01", "us").astype(np.int64))
_READ = pcsv.ReadOptions(column_names=list(OHLCV_COLUMNS), skip_rows=1, use_threads=False)
_CONVERT = pcsv.ConvertOptions(column_types={c: pa.string() for c in OHLCV_COLUMNS},
                               strings_can_be_null=True, null_values=[""])


def read_object(body: bytes) -> pa.Table:
    """One raw object's rows, every column as text (null where empty), plus `malformed`: the line
    of a row that did not split into the schema's fields (its fields then as far as they go)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        body = body.decode("utf-8", errors="replace").encode()
    malformed: list[str] = []

    def set_aside(row) -> str:
        if row.text.strip(_BLANK):
            malformed.append(row.text)
        return "skip"

    parse = pcsv.ParseOptions(quote_char=False, invalid_row_handler=set_aside)
    try:
        table = pcsv.read_csv(io.BytesIO(body), read_options=_READ, parse_options=parse, convert_options=_CONVERT)
    except pa.ArrowInvalid as error:
        if "Empty CSV file" not in str(error):
            raise
        table = pa.table({c: pa.array([], pa.string()) for c in OHLCV_COLUMNS})
    table = table.append_column("malformed", pa.nulls(len(table), pa.string()))
    if malformed:
        fields = [(line.split(",") + [None] * len(OHLCV_COLUMNS))[:len(OHLCV_COLUMNS)] for line in malformed]
        cut = pa.table({c: pa.array([row[i] or None for row in fields], pa.string())
                        for i, c in enumerate(OHLCV_COLUMNS)}).append_column("malformed", pa.array(malformed))
        table = pa.concat_tables([table, cut])
    return table


def _numpy(array) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False)


def _blank(text: pa.ChunkedArray) -> np.ndarray:
    return _numpy(pc.fill_null(pc.equal(pc.utf8_trim(text, " "), ""), True))


def _doubles(text: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(values, parsed): a text column as float64 (NaN where not parsed) and where it parsed."""
    try:  # every value a plain number (the usual case): one vectorised cast
        return _numpy(pc.cast(text, pa.float64())), _numpy(pc.is_valid(text))
    except pa.ArrowInvalid:
        pass
    values = np.full(len(text), np.nan)
    ok = np.zeros(len(text), dtype=bool)
    for i, value in enumerate(text.to_pylist()):
        if value is not None and _NUMBER.fullmatch(stripped := value.strip()):
            values[i], ok[i] = float(stripped), True
    return values, ok


def _timestamps(text: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(micros, parsed): ISO 8601 text as microseconds since the epoch, UTC (no offset: UTC)."""
    try:  # every value with its offset (how the backfill writes them)
        parsed = pc.cast(text, pa.timestamp("us", "UTC"))
        return _numpy(pc.fill_null(parsed.cast(pa.int64()), 0)), _numpy(pc.is_valid(text))
    except pa.ArrowInvalid:
        pass
    micros = np.zeros(len(text), dtype=np.int64)
    ok = np.zeros(len(text), dtype=bool)
    for i, value in enumerate(text.to_pylist()):
        try:
            stamp = datetime.fromisoformat(value.strip())
        except (AttributeError, ValueError):
            continue
        stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        micros[i], ok[i] = (stamp - _EPOCH) // timedelta(microseconds=1), True
    return micros, ok


def session_days(micros: np.ndarray, usable: np.ndarray, symbol: str) -> np.ndarray:
    """Each bar's session (days since the epoch; -1 where not usable): its time in the symbol's
    exchange's time zone."""
    days = np.full(len(micros), -1, dtype=np.int64)
    if usable.any():
        local = pd.to_datetime(micros[usable], unit="us", utc=True).tz_convert(str(exchange_of(symbol).tz))
        days[usable] = local.tz_localize(None).to_numpy().astype("datetime64[D]").astype(np.int64)
    return days


def object_span(key: str) -> tuple[int, int]:
    """The sessions a raw object holds, as days since the epoch [first, end): its date or month."""
    match = _SPAN.search(key)
    if match is None:
        raise ValueError(f"{key}: not a raw OHLCV object (no date= or month= in the key)")
    if match[1] == "date":
        first = date.fromisoformat(match[2])
        end = first + timedelta(days=1)
    else:
        first = date.fromisoformat(match[2] + "-01")
        end = (first + timedelta(days=32)).replace(day=1)
    return (first - _EPOCH.date()).days, (end - _EPOCH.date()).days


def check(rows: pa.Table, key: str, symbol: str) -> pd.DataFrame:
    """The object's rows typed, with `reason` (None for a valid row), `repair` (None unless the
    range was widened), `day` (the session, days since the epoch; -1 if none) and `filed` (the
    session a set-aside row is filed under, before the run's interval is applied)."""
    n = len(rows)
    reason = np.full(n, None, dtype=object)
    unset = np.ones(n, dtype=bool)

    def rule(condition, text, detail=None) -> None:
        hit = np.asarray(condition, dtype=bool) & unset
        if hit.any():
            reason[hit] = text if detail is None else [text + str(v) for v in _numpy(detail)[hit]]
            unset[hit] = False

    sym, source, stamp = rows["symbol"], rows["source"], rows["timestamp"]
    rule(_numpy(rows["malformed"].is_valid()), f"malformed CSV row: not {len(OHLCV_COLUMNS)} fields")
    rule(_blank(sym), "null symbol")
    rule(~_numpy(pc.fill_null(pc.match_substring_regex(sym, SYMBOL_PATTERN), False)), "invalid symbol")
    rule(_numpy(pc.fill_null(pc.not_equal(sym, symbol), True)), f"symbol not its object's ({symbol})")
    rule(_blank(source), "null source")
    rule(_blank(stamp), "null timestamp")
    micros, stamp_ok = _timestamps(stamp)
    rule(~stamp_ok, "unparsable timestamp: ", stamp)

    values = {}
    for column in NUMBERS:
        missing = _blank(rows[column])
        values[column], parsed = _doubles(rows[column])
        if column in REQUIRED:
            rule(missing, f"null {column}")
        rule(~missing & ~parsed, f"unparsable {column}")
        rule(parsed & ~np.isfinite(values[column]), f"non-finite {column}")
    volume = values["volume"]
    with np.errstate(invalid="ignore"):
        rule(np.abs(volume) >= 2.0 ** 63, "volume out of range")
        sane = stamp_ok & (micros >= _SANE[0]) & (micros < _SANE[1])
        day = session_days(micros, sane, symbol)
        first, end = object_span(key)
        rule((day < first) | (day >= end), "timestamp not in its file's month" if end - first > 1
             else "timestamp not on its file's session date")
        o, h, low, c = (values[k] for k in ("open", "high", "low", "close"))
        rule(np.minimum.reduce([o, h, low, c]) < 0, "negative price")
        rule(volume < 0, "negative volume")
        rule(h < low, "high < low")
        top, bottom = np.maximum(o, c), np.minimum(o, c)
        rule((top - h > OHLC_REPAIR_TOLERANCE * h) | (low - bottom > OHLC_REPAIR_TOLERANCE * low),
             f"open/close outside [low, high] by more than {OHLC_REPAIR_TOLERANCE:.0%}")
        valid = unset.copy()  # no rule after this one
        # Kept, repaired: open or close slightly outside [low, high] (vendors' rounding, an
        # auction print). Dropping the bar would leave a hole that shifts every indicator after
        # it; the range is widened instead and the repair is recorded with the original values.
        above, below = valid & (top > h), valid & (bottom < low)
    repair = np.full(n, None, dtype=object)
    for i in np.flatnonzero(above | below):
        notes = ([f"high {rows['high'][i].as_py()} widened to {float(top[i])!r}"] if above[i] else []) + \
                ([f"low {rows['low'][i].as_py()} widened to {float(bottom[i])!r}"] if below[i] else [])
        repair[i] = "; ".join(notes)

    out = pd.DataFrame({"symbol": _numpy(sym)})
    out["timestamp"] = pd.to_datetime(np.where(valid, micros, 0), unit="us", utc=True)
    for column in NUMBERS:
        out[column] = values[column]
    out["high"] = np.where(above, top, h)
    out["low"] = np.where(below, bottom, low)
    out["volume"] = np.where(valid, np.nan_to_num(volume), 0).astype(np.int64)
    out["source"] = _numpy(source)
    out["reason"], out["repair"], out["day"] = reason, repair, day
    # A set-aside row's session: a day object's date; in a month object, the row's own session,
    # else (no usable time, or one off the month) -1: the run files it under its first session
    # in that month, so that a rerun of the interval files it the same way.
    own = (day >= first) & (day < end)
    out["filed"] = first if end - first == 1 else np.where(own, day, -1)
    out["span_first"] = first
    return out
