"""The console's query log page in a real browser: searches made through the HTTP API show up in its table,
figures and charts; the application filter narrows them; without a session it sends you to sign in.

Like test_console.py it drives Debian's Chromium through Playwright (skipped with a note without it) against a
live server on loopback; the screenshot goes to the test's folder and to MMSEARCH_CONSOLE_SHOTS when set.
"""

from __future__ import annotations

import base64
import io
import re
from datetime import timedelta

import httpx
import pytest
from PIL import Image

from api_fixtures import ADMIN, Api, start, stop
from console_browser import shot
from mmsearch.api.console import querylog as page_module
from mmsearch.api.console.session import COOKIE, Sessions
from mmsearch.catalog.models import utcnow
from mmsearch.catalog.querylog import QueryLogEntry

BOOKS = [
    {"id": "b1", "title": "三体 刘慈欣 科幻小说"},
    {"id": "s1", "title": "轻便网面 跑步运动鞋"},
    {"id": "s2", "title": "儿童运动鞋 透气"},
]


def _png_uri() -> str:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (30, 120, 200)).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@pytest.fixture(scope="module")
def api(tmp_path_factory, product_items) -> Api:
    """A server with three applications (`shop`, `bookshop` that corrects spelling, `quiet` never searched) and
    five searches through the HTTP API: one finds nothing, one is a picture, one gets its spelling corrected."""
    a = start(tmp_path_factory.mktemp("querylog"), product_items)
    a.mm.create_dataset("books", {"fields": [{"name": "id", "type": "string", "primary_key": True},
                                             {"name": "title", "type": "string", "searchable": True}]}, vector_dim=8)
    a.mm.import_items("books", BOOKS)
    a.mm.catalog.apps.create("bookshop", ["books"], {"spell_correction": "auto"})
    a.mm.catalog.apps.create("quiet", ["products"], {})
    key = a.mm.catalog.keys.create(["shop", "bookshop"], name="query log test").key
    searches = [
        ("shop", {"query": {"text": "running shoe"}, "dataset_id": "products", "user": {"_user_id": "u-runner"}}),
        ("shop", {"query": {"text": "summer dress"}, "dataset_id": "products"}),
        ("shop", {"query": {"text": "shoe"}, "dataset_id": "products",
                  "filter": {"op": "must", "field": "category", "conds": ["no-such-category"]}}),
        ("shop", {"query": {"image_url": _png_uri()}, "dataset_id": "products", "page_size": 3}),
        ("bookshop", {"query": {"text": "运功鞋"}, "dataset_id": "books"}),
    ]
    for app, body in searches:
        r = a.search(body, app=app, key=key)
        assert r.status_code == 200, r.text
        found = r.json()["result"]
        if "no-such-category" in str(body):
            assert found["total_items"] == 0 and not found["search_results"]
        else:
            assert found["total_items"] > 0
    a.mm.catalog.query_log.flush()
    yield a
    stop(a)



def _rows(page) -> list[str]:
    return page.locator("table.queries tbody tr").all_inner_texts()


def test_the_page_shows_the_searches_their_figures_and_charts_and_filters_by_application(api: Api, browser,
                                                                                          tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []  # the browser reports what the CSP refused (an inline style or script) as errors
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "404" not in m.text else None)
    missing: list[str] = []  # every file the page loads exists (a favicon aside: the console has none)
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 and "favicon" not in r.url else None)
    page.goto(f"{api.server.url}/console/queries")
    assert page.url.endswith("/console/login")
    page.get_by_label("Admin token").fill(ADMIN)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{api.server.url}/console/queries")
    assert page.locator('nav a[aria-current="page"]').inner_text() == "Query log"

    rows = _rows(page)
    assert len(rows) == 5
    assert "bookshop" in rows[0] and "运功鞋" in rows[0] and "运动鞋" in rows[0]  # newest first, with its correction
    assert "(picture)" in rows[1] and "shop" in rows[1]
    assert "0/0" in rows[2]  # the search that found nothing
    assert "running shoe" in rows[4] and "u-runner" in rows[4] and "products" in rows[4]
    assert re.search(r"\b[1-9]\d*/[1-9]\d*\b", rows[4])  # results shown/total
    assert "Showing the newest 5 of 5 searches" in page.locator("#showing").inner_text()

    assert page.locator("#fig-searches").inner_text() == "5"
    assert page.locator("#fig-zero").inner_text() == "20.0%"  # one of five found nothing
    assert page.locator("#fig-corrected").inner_text() == "20.0%"  # one of five was corrected
    entries = api.mm.catalog.query_log.recent(limit=10)
    assert page.locator("#fig-p99").inner_text().endswith(" ms")
    shown_p99 = float(page.locator("#fig-p99").inner_text().removesuffix(" ms").replace(",", ""))
    assert shown_p99 <= round(max(e.latency_ms for e in entries), 1) + 0.05  # shown to one decimal

    charts = page.locator('svg.chart[role="img"]')
    assert charts.count() == 4
    labels = [charts.nth(i).get_attribute("aria-label") for i in range(4)]
    assert labels[0].startswith("Searches per 30 minutes:") and "highest" in labels[0]
    assert labels[1].startswith("Latency p50:") and labels[2].startswith("Latency p99:")
    assert labels[3].startswith("Zero-result rate:")
    assert page.get_by_role("img", name=re.compile(r"^Searches per 30 minutes")).is_visible()
    assert page.locator("svg.chart rect.bar").count() >= 4
    counted = sum(int(n) for n in re.findall(r": (\d+)", charts.nth(0).locator("desc").text_content()))
    assert counted == 5  # every search is in a bar
    shot(page, tmp_path, "queries")

    page.get_by_label("Application").select_option("bookshop")
    page.get_by_role("button", name="Show").click()
    assert "app=bookshop" in page.url
    rows = _rows(page)
    assert len(rows) == 1 and "运功鞋" in rows[0]
    assert page.locator("#fig-searches").inner_text() == "1"
    assert page.locator("#fig-corrected").inner_text() == "100.0%"
    assert page.locator("#fig-zero").inner_text() == "0.0%"

    page.get_by_label("Application").select_option("shop")
    page.get_by_label("Time window").select_option("1h")
    page.get_by_role("button", name="Show").click()
    assert len(_rows(page)) == 4 and page.locator("#fig-zero").inner_text() == "25.0%"
    assert charts.first.get_attribute("aria-label").startswith("Searches per minute:")

    page.get_by_label("Application").select_option("quiet")
    page.get_by_role("button", name="Show").click()
    assert "No searches yet in the last hour for quiet" in page.get_by_role("status").inner_text()
    assert page.locator("svg.chart").count() == 0 and page.locator("table.queries").count() == 0
    assert not errors and not missing, (errors, missing)
    page.close()


def test_without_a_session_the_page_sends_you_to_sign_in(api: Api):
    with httpx.Client(base_url=api.server.url, follow_redirects=False) as client:
        r = client.get("/console/queries")
        assert r.status_code == 303 and r.headers["location"] == "/console/login"
        client.cookies.set(COOKIE, "forged.value")
        assert client.get("/console/queries?app=shop").headers["location"] == "/console/login"


def test_the_page_says_when_the_figures_are_capped_and_escapes_what_was_searched(api: Api, monkeypatch):
    log = api.mm.catalog.query_log
    log.record(QueryLogEntry(request_id="evil", app_id="shop", dataset_id="products", latency_ms=3.0,
                             total_items=1, result_count=1, query_text='<img src=x onerror="alert(1)">'))
    log.flush()
    monkeypatch.setattr(page_module, "MAX_POINTS", 3)
    value, _ = Sessions(ADMIN).issue()
    with httpx.Client(base_url=api.server.url, cookies={COOKIE: value}) as client:
        r = client.get("/console/queries", params={"app": "shop"})
    assert r.status_code == 200 and "script-src 'self'" in r.headers["content-security-policy"]
    assert "The figures cover the newest 3 of 5 searches" in r.text
    assert "Showing the newest 5 of 5 searches" in r.text  # the table is not capped by the figures' limit
    assert '<img src=x onerror="alert(1)">' not in r.text and "&lt;img src=x" in r.text
    assert "style=" not in r.text and "<script>" not in r.text.split("</head>", 1)[1]


def test_the_catalog_reads_a_window_of_one_application_newest_first(api: Api):
    log = api.mm.catalog.query_log
    now = utcnow()
    old = QueryLogEntry(request_id="old", app_id="quiet", dataset_id="products", latency_ms=1.0, total_items=0,
                        result_count=0, ts=now - timedelta(days=2))
    new = [QueryLogEntry(request_id=f"new{i}", app_id="quiet", dataset_id="products", latency_ms=float(i),
                         total_items=i, result_count=min(i, 1), corrected_query="x" if i == 2 else None,
                         ts=now - timedelta(minutes=10 - i)) for i in range(3)]
    for e in [old, *new]:
        log.record(e)
    log.flush()
    day_ago = now - timedelta(days=1)
    points = log.since(day_ago, "quiet")
    assert [p.latency_ms for p in points] == [2.0, 1.0, 0.0]  # newest first, the old one outside the window
    assert [p.corrected for p in points] == [True, False, False]
    assert points[0].ts.tzinfo is not None and abs((points[0].ts - new[2].ts).total_seconds()) < 1e-3
    assert [p.total_items for p in log.since(day_ago, "quiet", limit=2)] == [2, 1]
    assert log.count(day_ago, "quiet") == 3 and log.count(None, "quiet") == 4
    assert [e.request_id for e in log.recent("quiet", limit=10, start=day_ago)] == ["new2", "new1", "new0"]
    assert len(log.recent("quiet", limit=10)) == 4  # without a start, as before
