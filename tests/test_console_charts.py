"""The query log page's figures and SVG charts (console/charts.py): bucketing, percentiles, rates, escaping."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import numpy as np
import pytest
from markupsafe import Markup

from mmsearch.api.console.charts import WINDOWS, bars, bucket_labels, number, span, summarize

START = 1_699_999_200.0  # a whole minute and a whole 30 minutes (UTC)


def test_span_ends_after_now_on_a_whole_bucket_and_covers_the_window():
    hour = WINDOWS["1h"]
    start, end = span(hour, START + 59.5)
    assert (start, end) == (START + 60 - 3_600, START + 60)
    start, end = span(hour, START)  # exactly on a boundary: a search now still falls in the last bar
    assert end == START + 60 and end - start == 3_600
    for w in WINDOWS.values():
        s, e = span(w, START + 12_345.6)
        assert e - s == w.buckets * w.bucket_s == w.seconds and s <= START + 12_345.6 - w.seconds + w.bucket_s
        assert 40 <= w.buckets <= 60


def test_bucket_labels_are_utc_bucket_starts():
    labels = bucket_labels(START, 60, 3, "%H:%M")
    first = datetime.fromtimestamp(START, UTC)
    assert labels[0] == first.strftime("%H:%M") and len(labels) == 3
    assert labels[1] == datetime.fromtimestamp(START + 60, UTC).strftime("%H:%M") != labels[0]


def test_searches_fall_in_their_buckets_and_outside_ones_are_left_out():
    ts = [START - 1, START, START + 59.9, START + 60, START + 179, START + 180]
    f = summarize(ts, [5, 10, 20, 30, 40, 50], [3, 3, 3, 3, 3, 3], [1, 1, 1, 1, 1, 1], [0] * 6,
                  start=START, bucket_s=60, n=3)
    assert f.counts.tolist() == [2, 1, 1]  # START-1 and START+180 are outside the 3 buckets
    assert f.count == 4
    assert f.p50 == pytest.approx(np.percentile([10, 20, 30, 40], 50)) == pytest.approx(25)


def test_percentiles_per_bucket_and_no_data_where_no_search():
    lat = list(range(1, 101))  # 1..100 ms in the first bucket
    ts = [START + 1] * 100 + [START + 130]
    f = summarize(ts, [*lat, 7.0], [1] * 101, [1] * 101, [False] * 101, START, 60, 3)
    assert f.p50s[0] == pytest.approx(50.5)
    assert f.p99s[0] == pytest.approx(np.percentile(lat, 99)) == pytest.approx(99.01)
    assert math.isnan(f.p50s[1]) and math.isnan(f.p99s[1]) and math.isnan(f.zero_rates[1])  # no data, not 0
    assert f.p50s[2] == f.p99s[2] == 7.0
    assert f.p99 == pytest.approx(np.percentile([*lat, 7.0], 99))


def test_percentiles_do_not_mix_buckets_when_times_are_unordered():
    ts = [START + 65, START + 5, START + 70, START + 10]  # newest first or shuffled, as the catalog hands them
    f = summarize(ts, [100, 1, 200, 3], [1] * 4, [1] * 4, [False] * 4, START, 60, 2)
    assert f.p50s.tolist() == [2.0, 150.0]


def test_zero_result_and_correction_rates():
    ts = [START + 1, START + 2, START + 3, START + 4, START + 61]
    total = [0, 5, 0, 9, 0]
    shown = [0, 5, 0, 0, 0]  # the fourth is a page past the end: it found 9, so it is not a zero-result search
    corrected = [True, False, False, False, True]
    f = summarize(ts, [1, 2, 3, 4, 5], total, shown, corrected, START, 60, 2)
    assert f.zero_rates.tolist() == [0.5, 1.0]
    assert f.zero_rate == pytest.approx(3 / 5)
    assert f.correction_rate == pytest.approx(2 / 5)


def test_empty_input_gives_empty_figures():
    f = summarize([], [], [], [], [], START, 60, 4)
    assert f.count == 0 and f.counts.tolist() == [0, 0, 0, 0]
    assert all(math.isnan(v) for v in (f.p50, f.p99, f.zero_rate, f.correction_rate))
    assert np.isnan(f.p50s).all() and np.isnan(f.zero_rates).all()
    assert number(f.p50, 1, " ms") == "–" and number(1234.56, 1, " ms") == "1,234.6 ms"


def test_bars_draw_one_rect_per_bucket_with_data_scaled_to_the_highest():
    svg = bars([2, 0, float("nan"), 8], ["a", "b", "c", "d"], "Searches per minute", width=400, height=130)
    assert isinstance(svg, Markup) and svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'role="img"' in svg and "style=" not in svg
    heights = [float(h) for h in re.findall(r'<rect class="bar"[^>]* height="([\d.]+)"', svg)]
    assert len(heights) == 3  # none for the NaN bucket
    assert heights[2] == pytest.approx(130 - 16 - 18) and heights[0] == pytest.approx(heights[2] / 4)
    assert heights[1] == 0
    label = re.search(r'aria-label="([^"]*)"', svg).group(1)
    assert "Searches per minute" in label and "highest 8 at d" in label and "lowest 0 at b" in label
    assert "3 of 4 periods" in label
    desc = re.search(r"<desc>(.*)</desc>", svg).group(1)
    assert desc == "a: 2; b: 0; d: 8"


def test_bars_with_a_fixed_top_and_units():
    svg = bars([50.0], ["x"], "Zero-result rate", "%", digits=1, top=100, height=130)
    height = float(re.search(r'<rect class="bar"[^>]* height="([\d.]+)"', svg).group(1))
    assert height == pytest.approx((130 - 34) / 2)
    assert "50.0%" in svg


def test_bars_escape_every_text_they_hold():
    evil = '<script>alert("x")</script>&'
    svg = bars([1, 2], [evil, "b"], f"title {evil}", unit=' "u"')
    assert "<script>" not in svg and 'alert("x")' not in svg
    assert "&lt;script&gt;" in svg and "&amp;" in svg
    for value in re.findall(r'aria-label="([^"]*)"', svg):  # no attribute can be closed early
        assert "<" not in value and '"' not in value


def test_bars_without_data_say_so():
    for values, labels in (([], []), ([float("nan")] * 3, ["a", "b", "c"])):
        svg = bars(values, labels, "Latency p50")
        assert "<rect" not in svg and "No data" in svg and 'aria-label="Latency p50: no data"' in svg


def test_bars_refuse_labels_that_do_not_match():
    with pytest.raises(ValueError):
        bars([1, 2], ["a"], "t")
