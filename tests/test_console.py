"""The web console in a real browser: Debian's Chromium driven by Playwright against a live server on loopback.

Playwright cannot download its own browser here, so the test launches the system's (`chromium`, installed by
`.ci/run`) through `executable_path`; without it the browser tests are skipped with a note. Screenshots of each
page go to the test's output folder (and to MMSEARCH_CONSOLE_SHOTS when set: the README's come from there).
"""

from __future__ import annotations

import io
import time

import httpx
import pytest
from PIL import Image

from api_fixtures import ADMIN, Api, start, stop
from console_browser import shot
from mmsearch.api.console.session import COOKIE, Sessions

BOOKS = [
    {"id": "b1", "title": "三体 刘慈欣 科幻小说"},
    {"id": "s1", "title": "轻便网面 跑步运动鞋"},
    {"id": "s2", "title": "儿童运动鞋 透气"},
]


@pytest.fixture(scope="module")
def api(tmp_path_factory, product_items) -> Api:
    a = start(tmp_path_factory.mktemp("console"), product_items)
    a.mm.create_dataset("books", {"fields": [{"name": "id", "type": "string", "primary_key": True},
                                             {"name": "title", "type": "string", "searchable": True}]}, vector_dim=8)
    a.mm.import_items("books", BOOKS)
    a.mm.catalog.apps.create("bookshop", ["books"], {"spell_correction": "auto"})
    yield a
    stop(a)



def test_sign_in_search_see_the_correction_make_and_revoke_a_key_and_sign_out(api: Api, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{api.server.url}/console")
    assert page.url.endswith("/console/login")  # not signed in: the sign-in page
    page.get_by_label("Admin token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    assert "not the admin token" in page.get_by_role("alert").inner_text()
    shot(page, tmp_path, "login")

    page.get_by_label("Admin token").fill(ADMIN)
    page.get_by_role("button", name="Sign in").click()
    assert page.url.endswith("/console")
    assert page.get_by_role("cell", name="shop", exact=True).is_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert ADMIN not in cookie["value"]
    shot(page, tmp_path, "applications")

    page.goto(f"{api.server.url}/console/apps/shop")
    page.get_by_label("Query").fill("running shoe")
    page.get_by_role("button", name="Search", exact=True).click()
    cards = page.locator("li.hit")
    assert cards.count() >= 2
    assert "running" in cards.first.locator("h2").inner_text().lower()
    assert page.locator("li.hit img").first.get_attribute("src").startswith("https://img.example.com/")
    assert cards.first.locator("meter").count() >= 2  # the fused score and each channel's
    assert "curl -s -X POST" in page.locator("#curl").inner_text()
    shot(page, tmp_path, "playground")

    picture = tmp_path / "query.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(picture)
    page.get_by_label("Or search by a picture").set_input_files(str(picture))
    page.get_by_role("button", name="Search by picture").click()
    assert "for the picture query.png" in page.locator("main").inner_text()
    assert page.locator("li.hit").count() >= 1

    page.goto(f"{api.server.url}/console/apps/bookshop")
    page.get_by_label("Query").fill("运功鞋")
    page.get_by_role("button", name="Search", exact=True).click()
    assert "Showing results for 运动鞋" in page.get_by_role("status").inner_text()
    assert page.locator("li.hit").count() == 2
    shot(page, tmp_path, "spelling")

    page.goto(f"{api.server.url}/console/datasets")
    row = page.get_by_role("row").filter(has_text="products")
    assert "12" in row.inner_text() and "shop" in row.inner_text()
    shot(page, tmp_path, "datasets")

    # an import posted to the management API shows up on the jobs page, finished, with its counts
    posted = api.admin.post("/admin/v1/datasets/books/items", json=[{"id": "b9", "title": "球鞋"}, {"title": "no id"}])
    assert posted.status_code == 202
    job_id = posted.json()["job_id"]
    deadline = time.monotonic() + 30
    while api.admin.get(f"/admin/v1/jobs/{job_id}").json()["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    page.goto(f"{api.server.url}/console/jobs")
    job_row = page.get_by_role("row").filter(has_text=job_id).inner_text()
    assert "succeeded" in job_row and "2/2" in job_row and "books" in job_row

    # a key for `shop`: its secret is shown once, it searches, and once revoked it no longer does
    page.goto(f"{api.server.url}/console/keys")
    page.get_by_label("shop", exact=True).check()
    page.get_by_label("Name (who uses it)").fill("console test")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_label("API key (Authorization: Bearer …)").input_value()
    shot(page, tmp_path, "keys")
    body = {"query": {"text": "running"}, "dataset_id": "products"}
    assert api.search(body, key=key).status_code == 200
    page.reload()
    assert key not in page.content()  # shown once
    key_id = key.split("_")[1]  # mms_<id>_<secret>
    page.get_by_role("button", name=f"Revoke {key_id}").click()
    assert "revoked" in page.get_by_role("row").filter(has_text=key_id).inner_text()
    deadline = time.monotonic() + 5  # the server caches keys for 2 s
    while api.search(body, key=key).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert api.search(body, key=key).status_code == 401, key_id

    page.get_by_role("button", name="Sign out").click()
    assert page.url.endswith("/console/login")
    page.goto(f"{api.server.url}/console/apps/shop")
    assert page.url.endswith("/console/login")  # the session is gone
    page.close()


def test_state_changing_requests_need_the_csrf_token(api: Api):
    sessions = Sessions(ADMIN)
    value, session = sessions.issue()
    with httpx.Client(base_url=api.server.url, cookies={COOKIE: value}, follow_redirects=False) as client:
        assert client.get("/console").status_code == 200  # a valid session reads pages
        png = io.BytesIO()
        Image.new("RGB", (32, 32), "white").save(png, "PNG")
        files = {"image": ("q.png", png.getvalue(), "image/png")}
        assert client.post("/console/apps/shop", files=files, data={"csrf": "wrong"}).status_code == 403
        assert client.post("/console/apps/shop", files=files, data={"csrf": session.csrf}).status_code == 200
        assert client.post("/console/logout", data={}).status_code == 403
        # the login form too: without the cookie it set, the admin token alone does not sign in
        r = client.post("/console/login", data={"token": ADMIN, "csrf": "made-up"})
        assert r.status_code == 403 and COOKIE not in r.headers.get("set-cookie", "")


def test_sessions_are_signed_expire_and_follow_the_admin_token():
    sessions = Sessions("token-a", hours=1)
    value, _ = sessions.issue(now=1_000.0)
    assert sessions.read(value, now=1_001.0) is not None
    assert sessions.read(value, now=1_000.0 + 3_601) is None  # expired
    body, mac = value.split(".")
    assert sessions.read(f"{body}x.{mac}", now=1_001.0) is None  # tampered
    assert sessions.read("garbage", now=1_001.0) is None and sessions.read(None) is None
    assert Sessions("token-b").read(value, now=1_001.0) is None  # a new admin token signs everyone out


def test_media_is_served_only_to_a_session_and_only_under_the_roots(api: Api, tmp_path):
    with httpx.Client(base_url=api.server.url) as client:
        assert client.get("/console/media", params={"ref": "/etc/passwd"}).status_code == 401
        value, _ = Sessions(ADMIN).issue()
        client.cookies.set(COOKIE, value)
        assert client.get("/console/media", params={"ref": "/etc/passwd"}).status_code == 404
