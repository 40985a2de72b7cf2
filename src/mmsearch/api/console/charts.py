"""The query log page's figures and charts: pure functions over plain arrays, no web framework.

A page view reads a bounded number of searches; `summarize` turns them into per-bucket counts, latency
percentiles and zero-result rates with numpy, and `bars` draws one series as an inline SVG the server sends
ready-made. No chart library and no script, and nothing the console's CSP refuses: no `style=` attributes, only
SVG presentation attributes and the classes console.css defines. Every piece of text put into the SVG is escaped
with markupsafe, so the result can be a `Markup` that Jinja inserts as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from markupsafe import Markup, escape


@dataclass(frozen=True)
class Window:
    """A time window the page offers, and the bucket size its charts use (about 50 bars whatever the window)."""

    key: str
    label: str
    seconds: int
    bucket_s: int
    per: str  # "Searches per <per>"
    time_format: str  # strftime of a bucket's start

    @property
    def buckets(self) -> int:
        return self.seconds // self.bucket_s


WINDOWS: dict[str, Window] = {w.key: w for w in (
    Window("1h", "last hour", 3_600, 60, "minute", "%H:%M"),
    Window("24h", "last 24 hours", 86_400, 1_800, "30 minutes", "%b %d %H:%M"),
    Window("7d", "last 7 days", 604_800, 10_800, "3 hours", "%b %d %H:%M"),
)}
DEFAULT_WINDOW = "24h"


def span(window: Window, now: float) -> tuple[float, float]:
    """Start and end (epoch seconds) of the window's buckets. The end is the next whole bucket after `now`, so the
    bars fall on round times and the newest search is always in the last bar."""
    end = (math.floor(now / window.bucket_s) + 1) * window.bucket_s
    return end - window.buckets * window.bucket_s, end


def bucket_labels(start: float, bucket_s: float, n: int, time_format: str) -> list[str]:
    """Each bucket's start as UTC text (the query log stores UTC)."""
    return [datetime.fromtimestamp(start + i * bucket_s, UTC).strftime(time_format) for i in range(n)]


@dataclass(frozen=True)
class Figures:
    """Totals over the window and one value per bucket. A rate or percentile with no search under it is NaN
    ("no data", not zero)."""

    count: int
    p50: float
    p99: float
    zero_rate: float
    correction_rate: float
    counts: np.ndarray
    p50s: np.ndarray
    p99s: np.ndarray
    zero_rates: np.ndarray


def summarize(ts: Sequence[float] | np.ndarray, latency_ms: Sequence[float] | np.ndarray,
              total_items: Sequence[int] | np.ndarray, result_count: Sequence[int] | np.ndarray,
              corrected: Sequence[bool] | np.ndarray, start: float, bucket_s: float, n: int) -> Figures:
    """The figures of the searches at `ts` (epoch seconds) that fall in the n buckets from `start`; others are left
    out. A zero-result search is one that found nothing at all (no hit and a total of 0), not a page past the end."""
    t = np.asarray(ts, dtype=np.float64)
    lat = np.asarray(latency_ms, dtype=np.float64)
    idx = np.floor((t - start) / bucket_s).astype(np.int64) if t.size else np.zeros(0, np.int64)
    keep = (idx >= 0) & (idx < n)
    idx, lat = idx[keep], lat[keep]
    zero = ((np.asarray(total_items, dtype=np.int64) <= 0) & (np.asarray(result_count, dtype=np.int64) <= 0))[keep]
    fixed = np.asarray(corrected, dtype=bool)[keep]

    counts = np.bincount(idx, minlength=n)[:n]
    zeros = np.bincount(idx, weights=zero, minlength=n)[:n]
    with np.errstate(invalid="ignore", divide="ignore"):
        zero_rates = np.where(counts > 0, zeros / np.maximum(counts, 1), np.nan)
    p50s = np.full(n, np.nan)
    p99s = np.full(n, np.nan)
    if idx.size:
        ordered = lat[np.argsort(idx, kind="stable")]  # each bucket's latencies side by side
        ends = np.cumsum(counts)
        for i in np.flatnonzero(counts):
            p50s[i], p99s[i] = np.percentile(ordered[ends[i] - counts[i]:ends[i]], [50, 99])
    count = int(idx.size)
    p50, p99 = (float(v) for v in np.percentile(lat, [50, 99])) if count else (math.nan, math.nan)
    return Figures(
        count=count, p50=p50, p99=p99,
        zero_rate=float(zero.mean()) if count else math.nan,
        correction_rate=float(fixed.mean()) if count else math.nan,
        counts=counts, p50s=p50s, p99s=p99s, zero_rates=zero_rates,
    )


def number(value: float, digits: int = 0, unit: str = "") -> str:
    """A figure as the page prints it; "–" for no data."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}{unit}"


def bars(values: Sequence[float] | np.ndarray, labels: Sequence[str], title: str, unit: str = "",
         digits: int = 0, top: float | None = None, width: int = 600, height: int = 130) -> Markup:
    """One series as an SVG bar chart: a bar per bucket (none where the value is NaN), the highest value and the
    first and last bucket's labels as text, a `<title>` per bar for the pointer. For assistive technology it is one
    image whose `aria-label` (and `<title>`) summarise the series and whose `<desc>` lists every bucket with data.
    `top` fixes the scale's maximum (100 for a percentage); otherwise the highest value fills the height."""
    vals = np.asarray(values, dtype=np.float64)
    if len(labels) != vals.size:
        raise ValueError(f"{vals.size} values but {len(labels)} labels")
    some = ~np.isnan(vals)
    if not some.any():
        summary = f"{title}: no data"
        return Markup(
            f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(summary)}"><title>{escape(summary)}</title>'
            f'<text class="chart-empty" x="{width / 2:g}" y="{height / 2:g}" text-anchor="middle">No data</text></svg>'
        )

    def fmt(v: float) -> str:
        return number(float(v), digits, unit)

    hi_i, lo_i = int(np.nanargmax(vals)), int(np.nanargmin(vals))
    hi = float(vals[hi_i])
    summary = (f"{title}: {int(some.sum())} of {vals.size} periods from {labels[0]} to {labels[-1]} have data; "
               f"highest {fmt(hi)} at {labels[hi_i]}, lowest {fmt(vals[lo_i])} at {labels[lo_i]}")
    desc = "; ".join(f"{labels[i]}: {fmt(vals[i])}" for i in np.flatnonzero(some))

    pad_top, pad_bottom = 16, 18
    plot = height - pad_top - pad_bottom
    scale = top if top and top > 0 else hi
    step = width / vals.size
    gap = 1 if step > 3 else 0
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(summary)}">',
        f"<title>{escape(summary)}</title>",
        f"<desc>{escape(desc)}</desc>",
        f'<text class="chart-note" x="0" y="11">max {escape(fmt(hi))}</text>',
        f'<line class="chart-axis" x1="0" x2="{width}" y1="{pad_top + plot}" y2="{pad_top + plot}"/>',
    ]
    for i in np.flatnonzero(some):
        v = float(vals[i])
        h = 0.0 if scale <= 0 else max(0.0, min(v / scale, 1.0)) * plot
        if v > 0:
            h = max(h, 1.0)  # a small but non-zero value stays visible
        parts.append(
            f'<rect class="bar" x="{i * step:.2f}" y="{pad_top + plot - h:.2f}" width="{max(step - gap, 0.5):.2f}" '
            f'height="{h:.2f}"><title>{escape(labels[i])}: {escape(fmt(v))}</title></rect>'
        )
    y = height - 4
    parts.append(f'<text class="chart-note" x="0" y="{y}">{escape(labels[0])}</text>')
    parts.append(f'<text class="chart-note" x="{width}" y="{y}" text-anchor="end">{escape(labels[-1])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
