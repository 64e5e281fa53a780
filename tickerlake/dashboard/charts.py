"""The dashboard's plotly figures (pure functions of the frames the queries return)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

OVERLAYS = (("sma_20", "SMA 20"), ("sma_50", "SMA 50"), ("ema_12", "EMA 12"), ("ema_26", "EMA 26"),
            ("bb_upper", "Bollinger upper"), ("bb_lower", "Bollinger lower"))


def market_chart(bars: pd.DataFrame, anomalies: pd.DataFrame, title: str) -> go.Figure:
    """Candles with overlays and anomaly marks, volume, and (daily bars) RSI and MACD panes."""
    with_indicators = "rsi_14" in bars.columns
    rows = 4 if with_indicators else 2
    heights = [0.55, 0.15, 0.15, 0.15] if with_indicators else [0.75, 0.25]
    titles = ["Price", "Volume", "RSI 14", "MACD"][:rows]
    figure = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.03,
                           row_heights=heights, subplot_titles=titles)
    figure.add_trace(go.Candlestick(x=bars["ts"], open=bars["open"], high=bars["high"], low=bars["low"],
                                    close=bars["close"], name="OHLC"), row=1, col=1)
    if with_indicators:
        for column, label in OVERLAYS:
            figure.add_trace(go.Scatter(x=bars["ts"], y=bars[column], name=label, mode="lines",
                                        line={"width": 1}), row=1, col=1)
    if not anomalies.empty:
        figure.add_trace(go.Scatter(x=anomalies["ts"], y=anomalies["close"], mode="markers", name="anomaly",
                                    text=anomalies["kind"], marker={"symbol": "x", "size": 11, "color": "red"}),
                         row=1, col=1)
    figure.add_trace(go.Bar(x=bars["ts"], y=bars["volume"], name="Volume"), row=2, col=1)
    if with_indicators:
        figure.add_trace(go.Scatter(x=bars["ts"], y=bars["rsi_14"], name="RSI 14", mode="lines"), row=3, col=1)
        figure.add_hline(y=70, line_dash="dot", row=3, col=1)
        figure.add_hline(y=30, line_dash="dot", row=3, col=1)
        figure.add_trace(go.Scatter(x=bars["ts"], y=bars["macd"], name="MACD", mode="lines"), row=4, col=1)
        figure.add_trace(go.Scatter(x=bars["ts"], y=bars["macd_signal"], name="Signal", mode="lines"),
                         row=4, col=1)
        figure.add_trace(go.Bar(x=bars["ts"], y=bars["macd_hist"], name="Histogram"), row=4, col=1)
    figure.update_layout(title=title, height=900 if with_indicators else 600, xaxis_rangeslider_visible=False,
                         margin={"t": 60, "b": 20})
    if with_indicators:  # daily bars: no empty weekends between the sessions
        figure.update_xaxes(rangebreaks=[{"bounds": ["sat", "mon"]}])
    return figure


def live_chart(bars: pd.DataFrame, title: str) -> go.Figure:
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.03)
    figure.add_trace(go.Candlestick(x=bars["window_start"], open=bars["open"], high=bars["high"],
                                    low=bars["low"], close=bars["close"], name="OHLC"), row=1, col=1)
    figure.add_trace(go.Bar(x=bars["window_start"], y=bars["volume"], name="Volume"), row=2, col=1)
    figure.update_layout(title=title, height=500, xaxis_rangeslider_visible=False, margin={"t": 50, "b": 20})
    return figure
