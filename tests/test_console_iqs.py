"""The console's IQS pages in a real browser (Debian's Chromium through Playwright, as in test_console.py).

Web image search: the IQS endpoint's own checks and search over a seeded web corpus, without charging anyone;
its results and its refusals are compared with what `POST /search/multimodal` answers. IQS accounts: an account
made on the page, its secrets shown once, its API key used on the real IQS endpoint through deactivation,
recharges, a sub-key and a revocation. The pictures are served from loopback so the grid really shows them.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from api_fixtures import ADMIN, Api, start, stop
from console_browser import shot
from mmsearch.api.console.iqs import EMPTY_QUERY
from mmsearch.api.console.session import COOKIE, Sessions
from mmsearch.ingest.web.corpus import CorpusConfig, WebCorpus
from mmsearch.ingest.web.types import WebImage

SITES = ["www.a.com", "news.a.com", "b.cn", "c.org"]
LIONS = 10  # pictures titled 狮子 (lion); two more are elephants


def picture(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((12, 16, 3)) * 255).astype(np.uint8)  # distinct blocks: no near-duplicates
    buf = io.BytesIO()
    Image.fromarray(pixels).resize((320, 240), Image.NEAREST).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def pictures() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A loopback HTTP server for the corpus's image URLs, so the browser loads real pictures."""
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server calls it by this name
            data = files.get(self.path)
            self.send_response(200 if data else 404)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", files
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def api(tmp_path_factory, pictures) -> Iterator[Api]:
    """The console's server over a web corpus seeded the way test_api_iqs.py seeds it (WebCorpus.add)."""
    a = start(tmp_path_factory.mktemp("console_iqs"), [])
    base, files = pictures
    images = []
    for n in range(LIONS + 2):
        files[f"/img/{n}.png"] = picture(n)
        site = SITES[n % len(SITES)]
        images.append(WebImage(
            image_url=f"{base}/img/{n}.png", host_page_url=f"https://{site}/page/{n}.html",
            title=f"狮子 第{n}张 草原" if n < LIONS else f"大象 第{n}张",
            published_time=f"2025-0{1 + n % 9}-12T12:47:54+08:00", data=files[f"/img/{n}.png"],
        ))
    with WebCorpus(a.mm, a.mm.settings.web_dataset, CorpusConfig(min_side=100)) as corpus:
        corpus.ensure_dataset()
        report = corpus.add(images)
    assert report.imported == LIONS + 2, report.as_dict()
    yield a
    stop(a)



def sign_in(browser, api: Api, height: int = 900):
    page = browser.new_page(viewport={"width": 1280, "height": height})
    page.goto(f"{api.server.url}/console/login")
    page.get_by_label("Admin token").fill(ADMIN)
    page.get_by_role("button", name="Sign in").click()
    assert page.url.endswith("/console")
    return page


def iqs(api: Api, key: str, query: str = "狮子", exclude: str | None = None) -> httpx.Response:
    """The real IQS HTTP endpoint, with an account's API key."""
    body: dict[str, Any] = {"query": query}
    if exclude is not None:
        body["advancedParams"] = {"excludeSites": exclude}
    return api.client.post("/search/multimodal", json=body, headers={"Authorization": f"Bearer {key}"})


def search(page, query: str, exclude: str = "") -> None:
    page.get_by_label("Query").fill(query)
    page.get_by_label("Exclude sites").fill(exclude)
    page.get_by_role("button", name="Search", exact=True).click()


def test_web_search_shows_the_apis_images_excludes_sites_and_charges_no_one(api: Api, browser, tmp_path):
    key = api.mm.catalog.accounts.create("web-checker", plan="paid", credits=10, qps=100).api_key
    page = sign_in(browser, api, height=1400)
    page.get_by_role("link", name="Web search").click()
    assert page.get_by_role("link", name="Web search").get_attribute("aria-current") == "page"
    assert "no account is charged" in page.locator("main").inner_text()

    search(page, "狮子")
    cards = page.locator("li.hit")
    assert cards.count() >= LIONS
    links = [a.get_attribute("href") for a in page.locator("li.hit h2 a").all()]
    sites = cards.locator(".site").all_inner_texts()
    assert set(sites) == set(SITES)
    for link, site in zip(links, sites, strict=True):
        assert link.startswith(f"https://{site}/page/")
    first = cards.first
    assert "狮子" in first.locator("h2").inner_text()
    assert first.locator("time").inner_text().startswith("2025-")
    for a in first.locator("a").all():
        assert a.get_attribute("target") == "_blank" and a.get_attribute("rel") == "noopener noreferrer"
    page.wait_for_function("() => [...document.querySelectorAll('li.hit img')].every(i => i.complete && "
                           "i.naturalWidth === 320)")  # the pictures really load
    shot(page, tmp_path, "web")
    account = api.mm.catalog.accounts.get("web-checker")
    assert (account.credits, account.queries_today) == (10, 0)  # the console charges no one

    # the same engine call as the API: the same images in the same order
    answer = iqs(api, key)
    assert answer.status_code == 200, answer.text
    assert [i["hostPageUrl"] for i in answer.json()["imageItems"]] == links

    search(page, "狮子", "a.com")
    sites = page.locator("li.hit .site").all_inner_texts()
    assert sites and not any(s.endswith("a.com") for s in sites)
    assert set(sites) == {"b.cn", "c.org"}
    assert "excluding a.com" in page.locator("main").inner_text()
    answer = iqs(api, key, exclude="a.com")
    assert page.locator("li.hit h2 a").evaluate_all("l => l.map(a => a.href)") == [
        i["hostPageUrl"] for i in answer.json()["imageItems"]]

    # what the API refuses, the page refuses with the API's message (and nothing is charged for either)
    for query, exclude in (("狮子", "a b.com"), ("狮" * 51, ""), ("狮子", "b.cn,http://")):
        refused = iqs(api, key, query, exclude)
        assert refused.status_code == 400 and refused.json()["code"] == "InvalidParameter"
        search(page, query, exclude)
        assert page.get_by_role("alert").inner_text() == refused.json()["message"]
        assert page.locator("li.hit").count() == 0
    search(page, "   ")
    assert page.get_by_role("alert").inner_text() == EMPTY_QUERY
    page.close()


def test_an_empty_web_index_says_how_to_crawl(tmp_path):
    bare = start(tmp_path, [])
    try:
        value, _ = Sessions(ADMIN).issue()
        with httpx.Client(base_url=bare.server.url, cookies={COOKIE: value}) as client:
            page = client.get("/console/web", params={"q": "狮子"})
        assert page.status_code == 200
        assert "holds no images yet" in page.text and "mmsearch crawl https://" in page.text
        assert 'class="hit"' not in page.text
    finally:
        stop(bare)


def test_accounts_create_use_deactivate_recharge_subkey_and_revoke(api: Api, browser, tmp_path):
    page = sign_in(browser, api)
    page.get_by_role("link", name="IQS accounts").click()
    assert page.get_by_role("link", name="IQS accounts").get_attribute("aria-current") == "page"

    # a non-number is refused naming its field, with the admin API's own message
    page.get_by_label("Name").fill("acme")
    page.get_by_label("Plan", exact=True).select_option("paid")
    page.get_by_label("QPS limit").fill("lots")
    page.get_by_label("Credits").fill("2")
    page.get_by_role("button", name="Create account").click()
    admin = api.admin.post("/admin/v1/accounts", json={"name": "acme", "plan": "paid", "qps": "lots"})
    assert admin.status_code == 400
    assert page.get_by_role("alert").inner_text() == admin.json()["error"]["message"]
    assert "qps" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Name").input_value() == "acme"  # the form keeps what was typed

    page.get_by_label("QPS limit").fill("50")
    page.get_by_role("button", name="Create account").click()
    key = page.get_by_label("API key (Authorization: Bearer …)").input_value()
    ak = page.get_by_label("AccessKey ID").input_value()
    sk = page.get_by_label("AccessKey secret").input_value()
    assert key.startswith("iqs_") and ak.startswith("LTAI") and len(sk) == 30
    assert api.mm.catalog.accounts.key_by_access_key_id(ak)[1] == sk
    shot(page, tmp_path, "account")

    # the key works on the real endpoint: two credits, two answers, then the spec's Arrears
    for _ in range(2):
        answer = iqs(api, key)
        assert answer.status_code == 200 and answer.json()["imageItems"], answer.text
    arrears = iqs(api, key)
    assert (arrears.status_code, arrears.json()["code"]) == (403, "Retrieval.Arrears")

    page.goto(f"{api.server.url}/console/accounts/acme")  # the secrets were shown once
    assert key not in page.content() and sk not in page.content()
    assert page.locator("#credits-left").inner_text() == "0"

    page.get_by_label("Credits to add").fill("ten")
    page.get_by_role("button", name="Add credits").click()
    assert page.get_by_role("alert").inner_text().startswith("add_credits: ")
    page.get_by_label("Credits to add").fill("5")
    page.get_by_role("button", name="Add credits").click()
    assert page.locator("#credits-left").inner_text() == "5"
    assert iqs(api, key).status_code == 200
    page.get_by_label("Set the balance to").fill("100")
    page.get_by_role("button", name="Set credits").click()
    assert page.locator("#credits-left").inner_text() == "100"

    page.get_by_label("QPS limit").fill("0")
    page.get_by_role("button", name="Save plan").click()
    admin = api.admin.patch("/admin/v1/accounts/acme", json={"qps": 0})
    assert page.get_by_role("alert").inner_text() == admin.json()["error"]["message"]
    page.get_by_label("QPS limit").fill("7")
    page.get_by_role("button", name="Save plan").click()
    assert api.mm.catalog.accounts.get("acme").qps == 7

    page.get_by_role("button", name="Deactivate").click()
    assert page.locator("#state").inner_text() == "deactivated"
    refused = iqs(api, key)
    assert (refused.status_code, refused.json()["code"]) == (403, "Retrieval.NotActivate")
    page.get_by_role("button", name="Activate").click()
    assert page.locator("#state").inner_text() == "active"
    assert iqs(api, key).status_code == 200

    page.get_by_role("button", name="Add a sub-key").click()
    sub_key = page.get_by_label("API key (Authorization: Bearer …)").input_value()
    sub_ak = page.get_by_label("AccessKey ID").input_value()
    assert sub_key != key and sub_ak != ak
    assert iqs(api, sub_key).status_code == 200
    page.get_by_role("button", name=f"Revoke {sub_ak}").click()
    assert "revoked" in page.get_by_role("row").filter(has_text=sub_ak).inner_text()
    refused = iqs(api, sub_key)
    assert (refused.status_code, refused.json()["code"]) == (404, "InvalidAccessKeyId.NotFound")
    assert iqs(api, key).status_code == 200  # the main key still works

    page.get_by_role("link", name="All IQS accounts").click()
    row = page.get_by_role("row").filter(has_text="acme").inner_text()
    assert "paid" in row and "\t7\t" in row and "yes" in row and ak in row and "+1 revoked" in row
    assert sub_ak not in row
    account = api.mm.catalog.accounts.get("acme")
    assert f"\t{account.credits}\t" in row and f"\t{account.queries_today}\t" in row
    shot(page, tmp_path, "accounts")
    page.close()


def test_account_forms_need_a_session_and_its_csrf_token_and_refuse_bad_numbers(api: Api):
    made = api.mm.catalog.accounts.create("csrf-check", plan="paid", credits=3, qps=4)
    name, ak = "csrf-check", made.access_key_id
    posts = [
        ("/console/accounts", {"name": "intruder", "plan": "paid", "qps": "5", "credits": "9"}),
        (f"/console/accounts/{name}/activate", {}), (f"/console/accounts/{name}/deactivate", {}),
        (f"/console/accounts/{name}/plan", {"plan": "trial", "qps": "9"}),
        (f"/console/accounts/{name}/credits", {"credits": "99"}),
        (f"/console/accounts/{name}/recharge", {"add_credits": "99"}),
        (f"/console/accounts/{name}/subkeys", {"can_search": "1"}),
        (f"/console/account-keys/{ak}/revoke", {}),
    ]
    value, session = Sessions(ADMIN).issue()
    with httpx.Client(base_url=api.server.url, cookies={COOKIE: value}, follow_redirects=False) as client:
        for path, data in posts:
            assert client.post(path, data={**data, "csrf": "wrong"}).status_code == 403, path
            assert client.post(path, data=data).status_code == 403, path  # no token at all
        account = api.mm.catalog.accounts.get(name)
        assert (account.plan, account.qps, account.credits, account.active) == ("paid", 4, 3, True)
        assert [k.active for k in account.keys] == [True]
        assert "intruder" not in [a.name for a in api.mm.catalog.accounts.list()]

        # with the token: bad numbers are a 400 naming the field, never a 422 or a 500
        for path, field, bad in ((f"/console/accounts/{name}/credits", "credits", "lots"),
                                 (f"/console/accounts/{name}/recharge", "add_credits", ""),
                                 (f"/console/accounts/{name}/plan", "qps", "1.5"),
                                 (f"/console/accounts/{name}/credits", "credits", "9" * 5_000),
                                 ("/console/accounts", "qps", "-")):
            r = client.post(path, data={"csrf": session.csrf, "name": "n1", field: bad})
            assert r.status_code == 400 and 'role="alert"' in r.text and f"{field}: " in r.text, (path, bad)
        r = client.post(f"/console/accounts/{name}/recharge", data={"csrf": session.csrf, "add_credits": "9"})
        assert r.status_code == 303 and r.headers["location"] == f"/console/accounts/{name}"
        assert api.mm.catalog.accounts.get(name).credits == 12
        r = client.post("/console/accounts", data={"csrf": session.csrf, "name": name})
        assert r.status_code == 400 and "already exists" in r.text
        assert client.post("/console/account-keys/LTAInope/revoke", data={"csrf": session.csrf}).status_code == 400
        assert client.get("/console/accounts/nobody").status_code == 404

    with httpx.Client(base_url=api.server.url, follow_redirects=False) as anonymous:
        for path in ("/console/web", "/console/web?q=狮子", "/console/accounts", f"/console/accounts/{name}"):
            r = anonymous.get(path)
            assert r.status_code == 303 and r.headers["location"] == "/console/login", path
        for path, data in posts:
            r = anonymous.post(path, data={**data, "csrf": session.csrf})
            assert r.status_code == 303 and r.headers["location"] == "/console/login", path
