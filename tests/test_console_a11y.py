"""Every console page in a real browser, checked for accessibility (issue 13): axe-core's WCAG 2 A/AA rules and
best practices, no sideways scrolling at a phone's width, and the keyboard path through the playground.

axe-core is a test tool, not part of the console: `make test` fetches it, pinned, from the npm registry into
build/axe (tests/tools/fetch_npm.py checks its integrity hash); without it these tests are skipped with a note.
The console's CSP (`script-src 'self'`) refuses a `<script>` tag that Playwright would add, so axe's source is run with
`page.evaluate`, which goes through the DevTools protocol and is not subject to the page's CSP; the pages are
checked under the policy they really ship with (no `bypass_csp`).

Debian's Chromium through Playwright's `executable_path`, as in test_console.py, against a live server on loopback
holding data for every page: a dataset with local pictures, a finished import with a rejected item, applications
(one correcting spelling), keys, searches in the query log, IQS accounts and a web corpus.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from api_fixtures import ADMIN, Api, start, stop, wait_job
from console_browser import shot
from mmsearch.ingest.web.corpus import CorpusConfig, WebCorpus
from mmsearch.ingest.web.types import WebImage
from test_console_iqs import picture

REPO = Path(__file__).parent.parent
AXE = REPO / "build" / "axe" / "axe.min.js"
AXE_VERSION = re.search(r"^AXE_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M).group(1)  # the pin
# WCAG 2.0, 2.1 and 2.2 at levels A and AA, and axe's best practices (landmarks, heading order, empty headers)
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

COLORS = {"red": (220, 30, 30), "blue": (30, 40, 220), "green": (30, 180, 60)}
CATALOG_SCHEMA = {"fields": [
    {"name": "id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "color", "type": "string", "filterable": True},
    {"name": "price", "type": "float", "filterable": True, "sortable": True},
    {"name": "image", "type": "image"},
]}
ITEMS = [
    {"id": "r1", "title": "红色 跑步鞋 女款 lightweight running shoe", "color": "red", "price": 299.0,
     "image": "red.png"},
    {"id": "r2", "title": "红色 帆布鞋", "color": "red", "price": 159.0, "image": "red.png"},
    {"id": "b1", "title": "蓝色 运动鞋 男款", "color": "blue", "price": 399.0, "image": "blue.png"},
    {"id": "g1", "title": "绿色 登山鞋", "color": "green", "price": 599.0, "image": "green.png"},
    {"id": "bad", "title": "价格写错了", "color": "red", "price": "cheap"},
]
BOOKS = [{"id": "b1", "title": "三体 刘慈欣 科幻小说"}, {"id": "s1", "title": "轻便网面 跑步运动鞋"},
         {"id": "s2", "title": "儿童运动鞋 透气"}]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[Api, dict[str, str]]]:
    """The server with data on every page, and each page's path by name."""
    root = tmp_path_factory.mktemp("a11y-media")
    for n, (name, rgb) in enumerate(COLORS.items()):
        img = Image.new("RGB", (96, 96), rgb)
        img.paste((255, 255, 255), (n * 30, n * 30, n * 30 + 30, n * 30 + 30))
        img.save(root / f"{name}.png")
    web = root / "web"
    web.mkdir()
    pictures = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(web)))
    threading.Thread(target=pictures.serve_forever, daemon=True).start()

    api = start(tmp_path_factory.mktemp("console-a11y"), [], image_roots=str(root))
    mm = api.mm
    try:
        mm.create_dataset("catalog", CATALOG_SCHEMA, vector_dim=8)
        items = [{**i, **({"image": str(root / i["image"])} if "image" in i else {})} for i in ITEMS]
        posted = api.admin.post("/admin/v1/datasets/catalog/items", json=items)
        assert posted.status_code == 202, posted.text
        job = wait_job(api.admin, posted.json()["job_id"])
        assert (job["status"], job["progress"]["failed"]) == ("succeeded", 1), job
        mm.create_dataset("books", {"fields": [{"name": "id", "type": "string", "primary_key": True},
                                               {"name": "title", "type": "string", "searchable": True}]},
                          vector_dim=8)
        mm.import_items("books", BOOKS)
        mm.catalog.apps.create("store", ["catalog"], {"spell_correction": "auto", "synonyms": [["跑步鞋", "运动鞋"]]})
        mm.catalog.apps.create("bookshop", ["books"], {"spell_correction": "auto"})
        key = mm.catalog.keys.create(["store", "bookshop"], name="a11y tests").key
        for app, text in (("store", "红色"), ("store", "跑步鞋"), ("store", "zzz"), ("bookshop", "运功鞋")):
            body = {"query": {"text": text}, "dataset_id": "catalog" if app == "store" else "books",
                    "user": {"_user_id": "u-1"}}
            r = api.search(body, app=app, key=key)
            assert r.status_code == 200, r.text
        mm.catalog.query_log.flush()
        mm.catalog.accounts.create("acme", plan="paid", credits=10, qps=5)
        mm.catalog.accounts.create("trial-co", plan="trial")

        base = f"http://127.0.0.1:{pictures.server_port}"
        images = []
        for n in range(6):
            (web / f"{n}.png").write_bytes(picture(n))
            images.append(WebImage(image_url=f"{base}/{n}.png", host_page_url=f"https://news.example.cn/{n}.html",
                                   title=f"狮子 第{n}张 草原 lion", published_time="2025-03-12T12:47:54+08:00",
                                   data=(web / f"{n}.png").read_bytes()))
        with WebCorpus(mm, mm.settings.web_dataset, CorpusConfig(min_side=100)) as corpus:
            corpus.ensure_dataset()
            assert corpus.add(images).imported == 6

        pages = {
            "login": "/console/login",
            "applications": "/console",
            "application settings": "/console/apps/store/settings?saved=1",
            "new application": "/console/applications/new",
            "playground": "/console/apps/store?q=红色",
            "playground spelling": "/console/apps/bookshop?q=运功鞋",
            "datasets": "/console/datasets",
            "new dataset": "/console/datasets/new",
            "dataset": "/console/datasets/catalog?q=红色",
            "job": f"/console/jobs/{job['job_id']}",
            "jobs": "/console/jobs",
            "keys": "/console/keys",
            "web search": "/console/web?q=狮子",
            "accounts": "/console/accounts",
            "account": "/console/accounts/acme",
            "query log": "/console/queries",
            "not found": "/console/apps/nosuch",
        }
        yield api, pages
    finally:
        stop(api)
        pictures.shutdown()
        pictures.server_close()


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        pytest.skip(f"axe-core is not installed at {AXE.relative_to(REPO)}: `make axe` fetches it")
    return AXE.read_text(encoding="utf-8")



@pytest.fixture(scope="module")
def signed_in(browser, site):
    """One signed-in browser context for the module; each test opens its own page in it."""
    api, _ = site
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(f"{api.server.url}/console/login")
    page.get_by_label("Admin token").fill(ADMIN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console")
    page.close()
    yield context
    context.close()


def _open(browser, signed_in, site, name: str, viewport: dict[str, int]):
    """The page `name` as a user sees it: signed in (the sign-in page signed out, after a wrong token), with the
    banners a form shows after it is sent where a page has one (a new key, a new IQS sub-key)."""
    api, pages = site
    url = api.server.url + pages[name]
    if name == "login":
        page = browser.new_page(viewport=viewport)
        page.goto(url)
        page.get_by_label("Admin token").fill("not-the-token")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("alert").wait_for()
        return page
    page = signed_in.new_page()
    page.set_viewport_size(viewport)
    page.goto(url)
    if name == "keys":
        page.get_by_label("store", exact=True).check()
        page.get_by_label("Name (who uses it)").fill("phone app")
        page.get_by_role("button", name="Create key").click()
    elif name == "account":
        page.get_by_role("button", name="Add a sub-key").click()
    if name in ("keys", "account"):
        page.get_by_role("status", name="new key").wait_for()
    return page


def axe(page, source: str) -> list[dict[str, Any]]:
    """axe-core's violations on the page, its folded sections (`<details>`) opened so that they are checked too."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(source + "\n;undefined")
    page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
    return page.evaluate("""async (tags) => {
        const result = await axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
        return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, tags: v.tags,
            nodes: v.nodes.map(n => ({target: n.target.join(" "), html: n.html.slice(0, 160),
                                       summary: n.failureSummary}))}));
    }""", AXE_TAGS)


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({len(v['nodes'])} elements)")
        for n in v["nodes"][:6]:
            lines.append(f"    {n['target']}\n      {n['html']}\n      {(n['summary'] or '').replace(chr(10), ' / ')}")
    return "\n".join(lines)


PAGE_NAMES = ["login", "applications", "application settings", "new application", "playground",
              "playground spelling", "datasets", "new dataset", "dataset", "job", "jobs", "keys", "web search",
              "accounts", "account", "query log", "not found"]


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_axe_finds_nothing_on_the_page(name, browser, signed_in, site, axe_source):
    page = _open(browser, signed_in, site, name, DESKTOP)
    try:
        found = axe(page, axe_source)
        assert page.evaluate("() => axe.version") == AXE_VERSION, "build/axe is stale: `make axe` fetches the pin"
        assert not found, f"{name} ({page.url}):\n{describe(found)}"  # any impact: the console has none today
        # score bars and charts keep a name a screen reader says
        unnamed = page.evaluate("""() => { axe.setup(); try {
            return [...document.querySelectorAll("meter, progress, svg.chart, img, video")]
              .filter(el => !axe.commons.text.accessibleTextVirtual(axe.utils.getNodeFromTree(el)).trim())
              .map(el => el.outerHTML.slice(0, 120)); } finally { axe.teardown(); } }""")
        assert not unnamed, unnamed
    finally:
        page.close()


OVERFLOW = """() => {
    const width = window.innerWidth;
    const clipped = (el) => {  // inside a scroller, unless placed outside it (position: absolute or fixed)
        if (["absolute", "fixed"].includes(getComputedStyle(el).position)) return false;
        for (let p = el.parentElement; p; p = p.parentElement) {
            if (["auto", "scroll", "hidden"].includes(getComputedStyle(p).overflowX)) return true; }
        return false; };
    const wide = [...document.body.querySelectorAll("*")].filter(el => {
        const r = el.getBoundingClientRect(); return r.width && r.right > width + 1 && !clipped(el); });
    return {scroll: document.documentElement.scrollWidth, width,
            wide: wide.slice(0, 8).map(el => el.outerHTML.slice(0, 120))};
}"""


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_the_page_fits_a_phone_without_scrolling_sideways(name, browser, signed_in, site, axe_source, tmp_path):
    page = _open(browser, signed_in, site, name, PHONE)
    try:
        for state in ("as it opens", "with every folded section open"):
            fit = page.evaluate(OVERFLOW)
            assert fit["scroll"] <= fit["width"] + 1, (
                f"{name} {state} is {fit['scroll']} px wide on a {fit['width']} px phone: "
                + json.dumps(fit["wide"], ensure_ascii=False, indent=1))
            if name in ("playground", "datasets") and state == "as it opens":
                shot(page, tmp_path, f"{name}-phone")
            page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
        blocking = axe(page, axe_source)
        assert not blocking, f"{name} at a phone's width ({page.url}):\n{describe(blocking)}"
    finally:
        page.close()


FOCUSED = """() => { const el = document.activeElement, s = getComputedStyle(el), r = el.getBoundingClientRect();
    return {tag: el.tagName, text: el.textContent.trim(), id: el.id, outline: s.outlineStyle, color: s.outlineColor,
            ring: parseFloat(s.outlineWidth) || 0, shown: r.left >= 0 && r.top >= 0 && r.width > 0}; }"""


def contrast(rgb: str, against: tuple[int, int, int]) -> float:
    """WCAG's contrast ratio of a CSS rgb()/rgba() colour against an opaque one."""
    def luminance(channels: tuple[float, ...]) -> float:
        c = [v / 255 for v in channels]
        c = [v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    a, b = sorted((luminance(tuple(float(v) for v in re.findall(r"[\d.]+", rgb)[:3])), luminance(against)))
    return (b + 0.05) / (a + 0.05)


def test_the_keyboard_reaches_the_skip_link_then_the_menu_and_searches(signed_in, site):
    api, _ = site
    page = signed_in.new_page()

    def tab(times: int = 1, key: str = "Tab") -> dict[str, Any]:
        for _ in range(times):
            page.keyboard.press(key)
        return page.evaluate(FOCUSED)

    def ringed(el: dict[str, Any]) -> bool:  # a focus ring one can see: at least 2 px, 3:1 on the cards and the page
        return el["outline"] != "none" and el["ring"] >= 2 and min(
            contrast(el["color"], (255, 255, 255)), contrast(el["color"], (0xF6, 0xF7, 0xF9))) >= 3

    try:
        page.goto(api.server.url + "/console/apps/store")
        # From the top of the page: the query box has `autofocus`, and a blur() would leave Chromium's sequential
        # focus starting point on it, so the document's body takes focus, as on a page that autofocuses nothing.
        page.evaluate("() => { const b = document.body; b.tabIndex = -1; b.focus(); b.removeAttribute('tabindex'); }")

        skip = tab()
        assert skip["text"] == "Skip to content" and skip["shown"] and ringed(skip), skip  # shown once focused
        assert [tab()["text"] for _ in range(3)] == ["mmsearch", "Applications", "Datasets"]  # then the menu
        link = page.evaluate(FOCUSED)
        assert ringed(link), link

        assert tab(3, "Shift+Tab")["text"] == "Skip to content"
        page.keyboard.press("Enter")  # the skip link: the next Tab lands in the page's own content
        query = tab()
        assert query["id"] == "q" and ringed(query), query

        page.keyboard.type("红色")
        page.keyboard.press("Enter")  # searches, as the Search button does
        page.locator("li.hit").first.wait_for()
        assert "红色" in page.locator("li.hit h2").first.inner_text()
        button = tab(3)  # from the query box (focused again), past the dataset and page size
        assert (button["tag"], button["text"]) == ("BUTTON", "Search") and ringed(button), button
    finally:
        page.close()
