"""The console builds a search service from nothing, in a real browser: a dataset from the schema editor, an
uploaded file imported while the job page follows it, an application and its settings, a key, and the
playground's filter builder, sort, pasted picture, video moments and copy-as-Python (run with the official SDK).

Debian's Chromium through Playwright's `executable_path`, against a live server on loopback (test_console.py
says more). Screenshots go to the test's output folder and MMSEARCH_CONSOLE_SHOTS when set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from api_fixtures import ADMIN, Api, start, stop
from console_browser import shot
from mmsearch.api.console.session import COOKIE, Sessions
from videos import Scene, make_video

COLORS = {"red": (220, 30, 30), "blue": (30, 40, 220), "green": (30, 180, 60)}
ITEMS = [
    {"id": "r1", "title": "红色 跑步鞋 女款", "color": "red", "price": 299.0, "image": "red.png"},
    {"id": "r2", "title": "红色 帆布鞋", "color": "red", "price": 159.0, "image": "red.png"},
    {"id": "b1", "title": "蓝色 运动鞋 男款", "color": "blue", "price": 399.0, "image": "blue.png"},
    {"id": "g1", "title": "绿色 登山鞋", "color": "green", "price": 599.0, "image": "green.png"},
    {"id": "bad", "title": "价格写错了", "color": "red", "price": "cheap"},
]


@pytest.fixture(scope="module")
def served(tmp_path_factory, product_items):
    root = tmp_path_factory.mktemp("media")
    for n, (name, rgb) in enumerate(COLORS.items()):  # a colour and a white square where only it has one
        picture = Image.new("RGB", (96, 96), rgb)
        picture.paste((255, 255, 255), (n * 30, n * 30, n * 30 + 30, n * 30 + 30))
        picture.save(root / f"{name}.png")
    a = start(tmp_path_factory.mktemp("console-manage"), product_items, image_roots=str(root))
    yield a, root
    stop(a)



def signed_in(browser, api: Api):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(f"{api.server.url}/console/login")
    page.get_by_label("Admin token").fill(ADMIN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console")
    return page


def test_build_a_search_service_from_nothing_in_the_browser(served, browser, tmp_path):
    api, root = served
    page = signed_in(browser, api)
    url = api.server.url

    # -- a dataset from the schema editor: the API's own message for a schema without a primary key ----------
    page.goto(f"{url}/console/datasets")
    page.get_by_role("link", name="Create a dataset").click()
    page.get_by_label("Dataset id").fill("catalog")
    page.get_by_label("field 1 primary key").uncheck()
    page.get_by_role("button", name="Create dataset").click()
    assert "exactly one field must set primary_key" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Dataset id").input_value() == "catalog"  # nothing typed is lost
    page.get_by_label("field 1 primary key").check()
    page.get_by_label("field 4 name").fill("color")
    page.get_by_label("field 4 filterable").check()
    page.get_by_label("field 5 name").fill("price")
    page.get_by_label("field 5 type").select_option("float")
    page.get_by_label("field 5 filterable").check()
    page.get_by_label("field 5 sortable").check()
    shot(page, tmp_path, "dataset-new")
    page.get_by_role("button", name="Create dataset").click()
    page.wait_for_url("**/console/datasets/catalog")
    schema = page.get_by_role("table", name="schema").inner_text()
    assert "color" in schema and "filterable" in schema and "float" in schema
    assert "8-d vectors" in page.locator("main").inner_text()  # the image model's dimension

    # -- upload a file: the job page follows the import live and lists the rejected item ---------------------
    upload = tmp_path / "items.jsonl"
    upload.write_text("\n".join(json.dumps({**i, **({"image": str(root / i["image"])} if "image" in i else {})},
                                           ensure_ascii=False) for i in ITEMS), encoding="utf-8")
    page.get_by_label("A file of items").set_input_files(str(upload))
    page.get_by_role("button", name="Upload and import").click()
    page.wait_for_url("**/console/jobs/*")
    progress = page.locator("#progress")
    progress.get_by_text("succeeded").wait_for(timeout=30_000)  # swapped in by htmx, no reload
    assert "4 imported · 1 rejected" in progress.inner_text()
    rejected = page.get_by_role("table", name="rejected items").inner_text()
    assert "bad" in rejected and "price" in rejected
    shot(page, tmp_path, "job")

    page.goto(f"{url}/console/datasets/catalog")
    assert "r1" in page.locator("main").inner_text()  # a sample item
    page.get_by_label("Query").fill("红色")
    page.get_by_role("button", name="Search", exact=True).click()
    titles = page.locator("li.hit h2").all_inner_texts()
    assert titles and all("红色" in t for t in titles[:2])
    assert page.locator("li.hit img").first.evaluate("img => img.complete && img.naturalWidth") == 96  # /media
    shot(page, tmp_path, "dataset")

    # -- an application: a bad setting gets the API's message, then it is created and saved ------------------
    page.get_by_role("link", name="create one").click()
    page.get_by_label("Application id").fill("store")
    page.get_by_label("Max page size (1-100)").fill("lots")
    page.get_by_role("button", name="Create application").click()
    assert "config.max_page_size" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("catalog").is_checked()
    page.get_by_label("Max page size (1-100)").fill("20")
    page.get_by_label("Spell correction").select_option("auto")
    page.get_by_label("Synonym groups").fill("跑步鞋, 运动鞋")
    page.get_by_role("button", name="Create application").click()
    assert "Saved" in page.get_by_role("status").inner_text()
    page.get_by_label("Text weight per searchable field").fill("nosuch: 2")
    page.get_by_role("button", name="Save settings").click()
    assert "not a searchable field" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Text weight per searchable field").input_value() == "nosuch: 2"
    page.get_by_label("Text weight per searchable field").fill("title: 2")
    page.get_by_role("button", name="Save settings").click()
    app = api.mm.catalog.apps.get("store")
    assert app.config.max_page_size == 20 and app.config.spell_correction == "auto"
    assert app.config.synonyms == [["跑步鞋", "运动鞋"]] and app.config.field_weights == {"title": 2.0}
    shot(page, tmp_path, "app-settings")

    # -- a key, then the playground: filter builder, sort, copy as Python run with the official SDK ------------
    page.goto(f"{url}/console/keys")
    page.get_by_label("store", exact=True).check()
    page.get_by_role("button", name="Create key").click()
    banner = page.get_by_role("status", name="new key").inner_text()
    ak = banner.split("Access key ID ")[1].split()[0].rstrip(",")
    sk = banner.split("secret access key ")[1].split()[0]

    page.goto(f"{url}/console/apps/store")
    page.get_by_label("Query").fill("鞋")
    page.get_by_text("Filter, sort, location and user").click()
    page.get_by_label("condition 1 field").select_option("color")
    page.get_by_label("condition 1 values").fill("red")
    page.get_by_label("Sort by").select_option("price")
    page.get_by_label("Order").select_option("asc")
    page.get_by_role("button", name="Search", exact=True).click()
    assert page.locator("li.hit p.muted").all_inner_texts() == ["r2", "r1"]  # red only, cheapest first
    python = page.locator("#python").inner_text()
    assert '"op": "must"' not in python and "'op': 'must'" in python  # a Python literal, not JSON
    shot(page, tmp_path, "playground-filter")
    run = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "MMSEARCH_ACCESS_KEY_ID": ak, "MMSEARCH_SECRET_ACCESS_KEY": sk})
    assert run.returncode == 0, run.stderr
    assert "'r2'" in run.stdout and "'b1'" not in run.stdout  # the same request, signed by the SDK

    # a bad filter value: the API's message, naming the field
    page.get_by_label("condition 2 field").select_option("price")
    page.get_by_label("condition 2 operator").select_option("range")
    page.get_by_label("condition 2 values").fill("abc")
    page.get_by_role("button", name="Search", exact=True).click()
    assert "filter.conds[1]" in page.get_by_role("alert").inner_text()

    # -- a pasted picture is searched as a data URI; the next page posts it again -----------------------------
    page.goto(f"{url}/console/apps/store")
    page.get_by_label("Page size").select_option("10")
    with page.expect_navigation():  # the picture red.png, copied from somewhere and pasted on the page
        page.evaluate("""async (ref) => {
            const blob = await (await fetch("/console/media?ref=" + encodeURIComponent(ref))).blob();
            const data = new DataTransfer(); data.items.add(new File([blob], "red.png", {type: "image/png"}));
            document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data}));
        }""", str(root / "red.png"))
    assert "for the picture red.png" in page.locator("main").inner_text()
    assert page.locator("img.preview").get_attribute("src").startswith("data:image/png;base64,")
    assert page.locator("li.hit").count() == 4
    assert sorted(page.locator("li.hit p.muted").all_inner_texts()[:2]) == ["r1", "r2"]  # its own picture first
    shot(page, tmp_path, "playground-picture")

    # ...and one chosen with the file input; then a typo, corrected by the application's spelling
    page.get_by_role("button", name="Remove the picture").click()
    assert page.locator("img.preview").count() == 0
    with page.expect_navigation():
        page.get_by_label("Or search by a picture").set_input_files(str(root / "blue.png"))
    assert "for the picture blue.png" in page.locator("main").inner_text()
    assert page.locator("li.hit p.muted").first.inner_text() == "b1"
    page.goto(f"{url}/console/apps/store")
    page.get_by_label("Query").fill("运功鞋")
    page.get_by_role("button", name="Search", exact=True).click()
    assert "Showing results for 运动鞋" in page.get_by_role("status").inner_text()
    assert page.locator("li.hit p.muted").first.inner_text() == "b1"

    # the key is revoked, then the session ends
    key_id = next(k.id for k in api.mm.catalog.keys.list() if k.access_key_id == ak)
    page.goto(f"{url}/console/keys")
    page.get_by_role("button", name=f"Revoke {key_id}").click()
    assert "revoked" in page.get_by_role("row").filter(has_text=key_id).inner_text()
    page.get_by_role("button", name="Sign out").click()
    page.goto(f"{url}/console/datasets/catalog")
    assert page.url.endswith("/console/login")
    page.context.close()


def test_video_results_show_keyframes_at_their_moments(served, browser, tmp_path):
    api, root = served
    make_video(root / "ep.mkv", [Scene(3, (200, 30, 30)), Scene(3, (20, 40, 220))],
               subtitles=[(3.5, 5.5, "一只海豚跳出水面")])
    schema = {"fields": [{"name": "content_id", "type": "string", "primary_key": True},
                         {"name": "my_title", "type": "string", "searchable": True},
                         {"name": "video_url", "type": "video"}]}
    api.mm.create_dataset("clips", schema, type="video")
    report = api.mm.import_items("clips", [{"content_id": "v1", "my_title": "海洋纪录片",
                                            "video_url": [str(root / "ep.mkv")]}])
    assert report.rejected == 0, report.as_dict()
    api.mm.catalog.apps.create("ocean", ["clips"], {})
    page = signed_in(browser, api)
    page.goto(f"{api.server.url}/console/apps/ocean")
    page.get_by_label("Query").fill("海豚")
    page.get_by_role("button", name="Search", exact=True).click()
    moments = page.get_by_role("list", name="moments").first.inner_text()
    assert "0:03–0:05" in moments and "subtitle" in moments and "海豚" in moments
    frame = page.locator("li.hit img").first
    assert "/console/frame?" in frame.get_attribute("src")
    frame.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=frame.element_handle())
    pixel = frame.evaluate("""img => { const c = document.createElement('canvas'); c.width = c.height = 1;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0, 1, 1);
        return Array.from(g.getImageData(0, 0, 1, 1).data); }""")
    assert pixel[2] > 150 and pixel[0] < 90  # the keyframe at 4.5 s is the blue scene
    shot(page, tmp_path, "playground-video")
    page.context.close()


def test_a_running_job_is_cancelled_from_its_page(served, browser):
    api, root = served
    source = root / "pending.jsonl"
    source.write_text('{"item_id": "z1", "title": "x"}\n', encoding="utf-8")
    job = api.mm.catalog.jobs.create("products", str(source), 1, kind="file", worker="another-host")
    page = signed_in(browser, api)
    page.goto(f"{api.server.url}/console/jobs/{job.id}")
    assert "running" in page.locator("#progress").inner_text()
    page.get_by_role("button", name="Cancel this import").click()
    assert "cancelled" in page.locator("#progress").inner_text()
    assert api.mm.catalog.jobs.get(job.id).status == "cancelled"
    page.context.close()


@pytest.mark.parametrize("path", ["/console/datasets/new", "/console/datasets/products/import",
                                  "/console/applications/new", "/console/apps/shop/settings",
                                  "/console/apps/shop/delete", "/console/jobs/nope/cancel"])
def test_every_new_form_refuses_a_missing_or_wrong_csrf_token(served, path):
    api, _ = served
    value, _ = Sessions(ADMIN).issue()
    with httpx.Client(base_url=api.server.url, cookies={COOKIE: value}, follow_redirects=False) as client:
        for token in ("", "wrong"):
            r = client.post(path, data={"csrf": token, "id": "x", "datasets": "products"})
            assert r.status_code == 403, (path, r.status_code)
    assert api.mm.catalog.apps.get("shop").id == "shop"  # not deleted


@pytest.mark.parametrize("path", ["/console/datasets/new", "/console/datasets/products", "/console/applications/new",
                                  "/console/apps/shop/settings", "/console/jobs/nope", "/console/jobs/nope/progress"])
def test_pages_need_a_session(served, path):
    api, _ = served
    with httpx.Client(base_url=api.server.url, follow_redirects=False) as client:
        r = client.get(path)
        assert r.status_code in (303, 401), (path, r.status_code)
        if r.status_code == 303:
            assert r.headers["location"] == "/console/login"


def test_console_pages_carry_a_strict_content_security_policy(served):
    api, _ = served
    value, _ = Sessions(ADMIN).issue()
    with httpx.Client(base_url=api.server.url, cookies={COOKIE: value}) as client:
        r = client.get("/console/datasets/products")
        assert r.status_code == 200
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "onclick=" not in r.text and "<script>" not in r.text  # no inline script the policy would block
        assert Path(__file__).parent.parent.joinpath("src/mmsearch/api/console/static/htmx-LICENSE.txt").exists()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json"])
def test_csv_parquet_and_json_files_import_through_the_upload(served, tmp_path, suffix):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from api_fixtures import wait_job

    api, _ = served
    rows = [{"item_id": f"u{suffix[1:]}{n}", "title": f"上传 {suffix} 商品 {n}", "status": n} for n in range(3)]
    path = tmp_path / f"items{suffix}"
    if suffix == ".csv":
        path.write_text("item_id,title,status\n" + "".join(f"{r['item_id']},{r['title']},{r['status']}\n"
                                                           for r in rows), encoding="utf-8")
    elif suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    value, session = Sessions(ADMIN).issue()
    with httpx.Client(base_url=api.server.url, cookies={COOKIE: value}, follow_redirects=False) as client:
        r = client.post("/console/datasets/products/import", data={"csrf": session.csrf},
                        files={"file": (path.name, path.read_bytes())})
        assert r.status_code == 303 and r.headers["location"].startswith("/console/jobs/")
        job = wait_job(api.admin, r.headers["location"].rsplit("/", 1)[1])
    assert job["status"] == "succeeded" and job["progress"]["imported"] == 3, job
    assert not list((api.mm.settings.home / "jobs").glob(f"{job['job_id']}*"))  # the staged copy is gone
    assert api.mm.get("products", [rows[2]["item_id"]])[0]["status"] == 2


@pytest.mark.parametrize(("name", "content", "message"), [
    ("items.txt", b"{}", "is not a supported format"),
    ("empty.jsonl", b"", "holds no items"),
    ("broken.json", b"[{\"item_id\": ", "invalid JSON"),
])
def test_an_upload_that_cannot_be_read_is_refused_on_the_page(served, name, content, message):
    api, _ = served
    before = len(api.mm.catalog.jobs.list(None, None, 1000))
    value, session = Sessions(ADMIN).issue()
    with httpx.Client(base_url=api.server.url, cookies={COOKIE: value}) as client:
        r = client.post("/console/datasets/products/import", data={"csrf": session.csrf},
                        files={"file": (name, content)})
    assert r.status_code == 400 and message in r.text, r.text[-2000:]
    assert len(api.mm.catalog.jobs.list(None, None, 1000)) == before  # no job for it


def test_a_dropped_picture_is_searched_and_the_location_effect_is_shown(served, browser, tmp_path):
    api, root = served
    api.mm.catalog.apps.create("nearby", ["products"], {"location": {"field": "location", "radius_km": 50}})
    page = signed_in(browser, api)
    page.goto(f"{api.server.url}/console/apps/nearby")
    with page.expect_navigation():
        page.evaluate("""async (ref) => {
            const blob = await (await fetch("/console/media?ref=" + encodeURIComponent(ref))).blob();
            const data = new DataTransfer(); data.items.add(new File([blob], "green.png", {type: "image/png"}));
            document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
        }""", str(root / "green.png"))
    assert "for the picture green.png" in page.locator("main").inner_text()

    page.goto(f"{api.server.url}/console/apps/nearby")
    page.get_by_label("Query").fill("running shoe")
    page.get_by_text("Filter, sort, location and user").click()
    page.get_by_label("Latitude").fill("31.23")
    page.get_by_label("Longitude").fill("121.47")
    page.get_by_role("button", name="Search", exact=True).click()
    first = page.locator("li.hit").first
    assert first.locator("p.muted").inner_text() == "p01"  # the shoe at that very place
    effect = first.locator("dt", has_text="location").locator("xpath=following-sibling::dd[1]").inner_text()
    assert "+0.300" in effect and "0.0 km" in effect  # the full boost of the app's weight, at no distance
    assert "'latitude': '31.23'" in page.locator("#python").inner_text()
    shot(page, tmp_path, "playground-location")
    page.context.close()
