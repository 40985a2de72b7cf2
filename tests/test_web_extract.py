"""Page extraction: charset decoding, image URLs and titles, published times, links, bad pages."""

from __future__ import annotations

import json
from datetime import UTC, timedelta, timezone

import pytest

from mmsearch.ingest.web.extract import decode_html, extract_page, parse_published, pick_srcset, skip_reason

PAGE = "https://news.example.com/a/2024/story.html"


def images(page) -> dict[str, object]:
    return {img.image_url: img for img in page.images}


def html(head: str = "", body: str = "") -> str:
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


# ------------------------------------------------------------------------------------------------ charset

CHINESE = "狮子一生征战沙场，背后藏着无数生死搏斗的传奇"


def test_gbk_page_with_header_charset_decodes() -> None:
    body = html(f"<title>{CHINESE}</title>", f"<p>{CHINESE}</p>").encode("gbk")
    assert decode_html(body, {"Content-Type": "text/html; charset=GBK"}).count(CHINESE) == 2
    page = extract_page(body, PAGE, {"content-type": "text/html;charset=gb2312"})
    assert page.title == CHINESE


def test_meta_charset_only_in_document() -> None:
    body = html(f'<meta charset="gb2312"><title>{CHINESE}</title>').encode("gbk")
    assert extract_page(body, PAGE, {"Content-Type": "text/html"}).title == CHINESE
    body = html(f'<meta http-equiv="Content-Type" content="text/html; charset=gbk"><title>{CHINESE}</title>')
    assert extract_page(body.encode("gbk"), PAGE).title == CHINESE


def test_gb2312_label_decodes_gbk_and_gb18030_only_characters() -> None:
    # 镕 is GBK, not GB2312: a strict gb2312 decoder loses it; one such character is all a page needs.
    text = "朱镕基总理答记者问"
    body = html(f'<meta charset="gb2312"><title>{text}</title>').encode("gb18030")
    assert extract_page(body, PAGE).title == text
    assert text in decode_html(html(f"<p>{text}</p>").encode("gbk"), {"Content-Type": "text/html; charset=GB2312"})
    many = "朱镕基 陶喆 €"  # several GBK/GB18030-only characters
    body = html(f'<meta charset="gb2312"><title>{many}</title>').encode("gb18030")
    assert extract_page(body, PAGE).title == many


def test_wrong_header_charset_falls_back_to_meta() -> None:
    body = html(f'<meta charset="gbk"><title>{CHINESE}</title>').encode("gbk")
    assert extract_page(body, PAGE, {"Content-Type": "text/html; charset=utf-8"}).title == CHINESE


def test_undeclared_gbk_is_detected() -> None:
    text = (CHINESE + "。草原之王卸下了所有锋芒，他把狮群的威严藏进拥抱。") * 8
    body = html(f"<title>{CHINESE}</title>", f"<p>{text}</p>").encode("gbk")
    assert CHINESE in decode_html(body)


def test_utf8_default_and_latin1_server_default() -> None:
    body = html(f"<title>{CHINESE}</title>").encode("utf-8")
    assert extract_page(body, PAGE).title == CHINESE
    assert extract_page(body, PAGE, {"Content-Type": "text/html; charset=ISO-8859-1"}).title == CHINESE
    # UTF-8 bytes that windows-1252 would also decode (as "CafÃ©"): a latin-1 header is a server default
    assert extract_page(html("<title>Café</title>").encode(), PAGE, {"Content-Type": "text/html; charset=iso-8859-1"}
                        ).title == "Café"
    latin = html("<title>Café</title>").encode("latin-1")
    assert extract_page(latin, PAGE, {"Content-Type": "text/html; charset=iso-8859-1"}).title == "Café"


def test_bom_wins() -> None:
    body = b"\xef\xbb\xbf" + html(f'<meta charset="gbk"><title>{CHINESE}</title>').encode("utf-8")
    assert extract_page(body, PAGE).title == CHINESE
    utf16 = b"\xff\xfe" + html(f"<title>{CHINESE}</title>").encode("utf-16-le")
    assert extract_page(utf16, PAGE, {"Content-Type": "text/html; charset=utf-8"}).title == CHINESE


# ------------------------------------------------------------------------------------------------ titles

def test_title_falls_back_to_og_title_then_h1() -> None:
    assert extract_page(html('<meta property="og:title" content="OG 标题">'), PAGE).title == "OG 标题"
    assert extract_page(html("<title> </title>", "<h1>  Big\n news </h1>"), PAGE).title == "Big news"
    assert extract_page(html("<title>\n  Two\n words </title>"), PAGE).title == "Two words"


def test_image_title_sources_in_order() -> None:
    body = html("<title>Page title</title>", """
      <img src="/alt.jpg" alt="A lion at dawn" title="ignored title attr">
      <img src="/titleattr.jpg" alt="IMG_2024.jpg" title="Lioness resting">
      <figure><div><img src="/fig.jpg" alt="图片"></div><figcaption> 草原上的 <b>狮子</b> </figcaption></figure>
      <div class="photo"><img src="/cls.jpg"><span class="pic-desc">Cubs playing</span></div>
      <p style="text-align: center"><img src="/next.jpg"></p><p style="text-align:center">图为非洲狮</p>
      <p>Some long body text that is not a caption at all.</p>
      <ul><li><a href="/item"><img src="/own.jpg"></a><a href="/item">小狮子也太能闹腾了</a></li>
          <li><a href="/item2"><img src="/own2.jpg"></a><a href="/item2">第二个</a></li></ul>
      <div><img src="/none.jpg" alt="12345678"><p>""" + "long paragraph " * 20 + """</p></div>
    """)
    found = images(extract_page(body, PAGE))
    base = "https://news.example.com"
    assert found[f"{base}/alt.jpg"].title == "A lion at dawn"
    assert found[f"{base}/alt.jpg"].alt == "A lion at dawn"
    assert found[f"{base}/titleattr.jpg"].title == "Lioness resting"
    assert found[f"{base}/titleattr.jpg"].alt == "IMG_2024.jpg"
    assert found[f"{base}/fig.jpg"].title == "草原上的 狮子"
    assert found[f"{base}/cls.jpg"].title == "Cubs playing"
    assert found[f"{base}/next.jpg"].title == "图为非洲狮"
    assert found[f"{base}/own.jpg"].title == "小狮子也太能闹腾了"
    assert found[f"{base}/own2.jpg"].title == "第二个"
    assert found[f"{base}/none.jpg"].title == "Page title"


def test_same_url_keeps_best_title_and_first_position() -> None:
    body = html('<title>Page</title><meta property="og:image" content="/lion.jpg">', """
        <img src="/other.jpg" alt="Other">
        <img src="/lion.jpg">
        <img src="https://news.example.com/lion.jpg#top" alt="The lion king">
        <img src="/lion.jpg" alt="image">
    """)
    page = extract_page(body, PAGE)
    urls = [img.image_url for img in page.images]
    assert urls == ["https://news.example.com/lion.jpg", "https://news.example.com/other.jpg"]
    assert page.images[0].title == "The lion king"


def test_og_image_gets_page_title_and_declared_size() -> None:
    body = html("""<title>狮子新闻</title>
        <meta property="og:image" content="//img.example.net/og.jpg">
        <meta property="og:image:width" content="1200"><meta property="og:image:height" content="630">
        <meta name="twitter:image" content="/tw.jpg"><link rel="image_src" href="/ls.jpg">""")
    found = images(extract_page(body, PAGE))
    og = found["https://img.example.net/og.jpg"]
    assert (og.title, og.width, og.height, og.host_page_url) == ("狮子新闻", 1200, 630, PAGE)
    assert found["https://news.example.com/tw.jpg"].title == "狮子新闻"
    assert found["https://news.example.com/tw.jpg"].width is None
    assert "https://news.example.com/ls.jpg" in found


# ------------------------------------------------------------------------------------------------ URLs

def test_base_href_and_relative_urls() -> None:
    body = html('<base href="/static/v2/">', """
        <img src="rel.jpg" alt="Relative">
        <img src="../up.jpg" alt="Up">
        <img src="/abs.jpg" alt="Root">
        <img src="//cdn.example.org/proto.jpg" alt="Protocol relative">
        <img src=" https://other.example.com/full.jpg " alt="Absolute">
        <img src="sp ace.jpg" alt="Space">
        <a href="page2.html">next</a>""")
    page = extract_page(body, "http://news.example.com/a/b.html")
    assert page.base_url == "http://news.example.com/static/v2/"
    assert [img.image_url for img in page.images] == [
        "http://news.example.com/static/v2/rel.jpg",
        "http://news.example.com/static/up.jpg",
        "http://news.example.com/abs.jpg",
        "http://cdn.example.org/proto.jpg",
        "https://other.example.com/full.jpg",
        "http://news.example.com/static/v2/sp%20ace.jpg",
    ]
    assert page.links == ["http://news.example.com/static/v2/page2.html"]


def test_without_base_urls_resolve_against_page() -> None:
    page = extract_page(html("", '<img src="pic.jpg" alt="A picture of note">'), PAGE)
    assert page.base_url == PAGE
    assert page.images[0].image_url == "https://news.example.com/a/2024/pic.jpg"


def test_pick_srcset() -> None:
    assert pick_srcset("small.jpg 320w, large.jpg 1024w, mid.jpg 640w") == "large.jpg"
    assert pick_srcset("a.jpg, b.jpg 2x, c.jpg 1.5x") == "b.jpg"
    assert pick_srcset("a.jpg") == "a.jpg"
    commas = "https://res.example.com/w_400,h_300/x.jpg 400w, https://res.example.com/w_800,h_600/x.jpg 800w"
    assert pick_srcset(commas) == "https://res.example.com/w_800,h_600/x.jpg"
    assert pick_srcset("data:image/gif;base64,R0lGOD 1000w, real.jpg 10w") == "real.jpg"
    assert pick_srcset("a.jpg 100w,b.jpg 200w") == "b.jpg"
    assert pick_srcset("  ") is None
    assert pick_srcset("") is None


def test_srcset_lazy_attributes_and_picture() -> None:
    body = html("<title>T</title>", """
        <img src="/s.jpg" srcset="/s.jpg 1x, /s@2x.jpg 2x" alt="Density">
        <img src="/w.jpg" srcset="/w-320.jpg 320w, /w-1280.jpg 1280w" width="320" height="200" alt="Widths">
        <img src="/img/blank.gif" data-src="/lazy1.jpg" alt="Lazy data-src">
        <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-original="/lazy2.jpg" alt="Lazy original">
        <img src="/loading.png" data-srcset="/ds-1.jpg 1x, /ds-2.jpg 2x" alt="Lazy srcset">
        <img src="/img/lazy-placeholder.png" alt="Placeholder only">
        <picture><source srcset="/p-640.webp 640w, /p-1600.webp 1600w" type="image/webp">
                 <img src="/img/grey.gif" alt="Picture"></picture>
        <img src="/plain.jpg" width="800" height="600" alt="Plain">
    """)
    found = images(extract_page(body, PAGE))
    root = "https://news.example.com"
    assert set(found) == {f"{root}/s@2x.jpg", f"{root}/w-1280.jpg", f"{root}/lazy1.jpg", f"{root}/lazy2.jpg",
                          f"{root}/ds-2.jpg", f"{root}/p-1600.webp", f"{root}/plain.jpg"}
    # declared sizes describe the src file, not the chosen srcset candidate
    assert (found[f"{root}/w-1280.jpg"].width, found[f"{root}/w-1280.jpg"].height) == (None, None)
    assert (found[f"{root}/plain.jpg"].width, found[f"{root}/plain.jpg"].height) == (800, 600)
    assert found[f"{root}/lazy2.jpg"].title == "Lazy original"


def test_icons_pixels_data_uris_and_non_images_are_skipped() -> None:
    body = html('<link rel="icon" href="/favicon.ico"><meta property="og:image" content="/logo.svg">', """
        <img src="/t.gif" width="1" height="1" alt="Tracker">
        <img src="/beacon.jpg" style="width:1px;height:1px" alt="Styled tracker">
        <img src="/favicon.png" alt="Favicon">
        <img src="/static/icons/home.png" alt="Home icon">
        <img src="/css/sprite-2x.png" alt="Sprite">
        <img src="/img/spacer.gif" alt="Spacer">
        <img src="data:image/png;base64,iVBORw0KGgo=" alt="Inline">
        <img src="/logo.svg" alt="Vector">
        <img src="/site.ico" alt="Ico">
        <img src="https://hm.baidu.com/hm.gif?si=abc" alt="Baidu tongji">
        <img src="https://www.facebook.com/tr?id=1&ev=PageView" alt="FB pixel">
        <img src="javascript:void(0)" alt="Script">
        <img alt="No source">
        <img src="/real-photo.jpg" width="1024" alt="Kept photo">
    """)
    page = extract_page(body, PAGE)
    assert [img.image_url for img in page.images] == ["https://news.example.com/real-photo.jpg"]
    assert page.images[0].width == 1024 and page.images[0].height is None


def test_skip_reason() -> None:
    assert skip_reason("https://x.example.com/a/lion.jpg") is None
    assert skip_reason("https://x.example.com/iconic-view.jpg") is None
    assert skip_reason("https://x.example.com/pixel-art-lion.png") is None
    assert skip_reason("https://x.example.com/favicon.ico")
    assert skip_reason("https://x.example.com/a.SVG")
    assert skip_reason("https://c.cnzz.com/stat.gif")
    assert skip_reason("https://x.example.com/img/blank.gif")


def test_links_absolute_deduplicated_in_order() -> None:
    body = html("", """
        <a href="/one#section">1</a><a href="two.html">2</a><a href="/one">1 again</a>
        <a href="mailto:editor@example.com">mail</a><a href="javascript:void(0)">js</a><a href="#top">top</a>
        <a href="tel:123">tel</a><a href="ftp://files.example.com/x">ftp</a>
        <a href="//other.example.org/three?q=1#x">3</a><a>no href</a>
        <map><area href="/four" alt="4"></map>""")
    assert extract_page(body, PAGE).links == [
        "https://news.example.com/one",
        "https://news.example.com/a/2024/two.html",
        "https://other.example.org/three?q=1",
        "https://news.example.com/four",
    ]


# ------------------------------------------------------------------------------------------------ time

CST = timezone(timedelta(hours=8))


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-12-18T22:24:24+08:00", "2024-12-18T22:24:24+08:00"),
    ("2024-12-18T14:24:24Z", "2024-12-18T14:24:24+00:00"),
    ("2024-12-18T22:24:24.123456+0800", "2024-12-18T22:24:24+08:00"),
    ("2024-12-18T09:24:24-05:00", "2024-12-18T09:24:24-05:00"),
    ("2024-12-18 22:24:24", "2024-12-18T22:24:24+08:00"),
    ("2024-12-18 22:24", "2024-12-18T22:24:00+08:00"),
    ("2024-12-18", "2024-12-18T00:00:00+08:00"),
    ("20241218", "2024-12-18T00:00:00+08:00"),
    ("2024/12/18 22:24:24", "2024-12-18T22:24:24+08:00"),
    ("2024.12.18", "2024-12-18T00:00:00+08:00"),
    ("2024年12月18日", "2024-12-18T00:00:00+08:00"),
    ("2024年12月18日 22:24", "2024-12-18T22:24:00+08:00"),
    ("2024年12月18日22时24分24秒", "2024-12-18T22:24:24+08:00"),
    ("发布时间：2024-12-18 22:24 来源：新华社", "2024-12-18T22:24:00+08:00"),
    ("Wed, 18 Dec 2024 14:24:24 GMT", "2024-12-18T14:24:24+00:00"),
    ("Wed, 18 Dec 2024 22:24:24 +0800", "2024-12-18T22:24:24+08:00"),
    ("Wednesday, 18-Dec-24 14:24:24 GMT", "2024-12-18T14:24:24+00:00"),
    ("December 18, 2024", "2024-12-18T00:00:00+08:00"),
    ("Dec 18, 2024 10:24 PM", "2024-12-18T22:24:00+08:00"),
    ("18 December 2024 22:24 UTC", "2024-12-18T22:24:00+00:00"),
    ("1734531864", "2024-12-18T14:24:24+00:00"),
    ("1734531864000", "2024-12-18T14:24:24+00:00"),
])
def test_parse_published_formats(value: str, expected: str) -> None:
    assert parse_published(value, CST) == expected


@pytest.mark.parametrize("value", ["", "   ", "yesterday", "2024-13-45", "2099-01-01", "1900-01-01", "N/A", None])
def test_parse_published_rejects(value) -> None:
    assert parse_published(value, CST) is None


def test_parse_published_default_tz() -> None:
    assert parse_published("2024-12-18 22:24:24", UTC) == "2024-12-18T22:24:24+00:00"
    assert parse_published("2024-12-18 22:24:24", None) is None
    assert parse_published("2024-12-18T22:24:24+08:00", None) == "2024-12-18T22:24:24+08:00"
    assert parse_published("2024-12-18 22:24:24") == "2024-12-18T22:24:24+08:00"


@pytest.mark.parametrize(("head", "body", "expected"), [
    ('<meta property="article:published_time" content="2024-12-18T22:24:24+08:00">', "",
     "2024-12-18T22:24:24+08:00"),
    ('<meta property="og:updated_time" content="2024-12-19T08:00:00+08:00">', "", "2024-12-19T08:00:00+08:00"),
    ('<meta name="publishdate" content="2024-12-18">', "", "2024-12-18T00:00:00+08:00"),
    ("", '<span itemprop="datePublished" content="2024-12-17T10:00:00Z">Dec 17</span>',
     "2024-12-17T10:00:00+00:00"),
    ("", '<span itemprop="datePublished">2024年12月16日 09:30</span>', "2024-12-16T09:30:00+08:00"),
    ("", '<p>Posted <time datetime="2024-12-15T07:00:00+08:00">Sunday</time></p>', "2024-12-15T07:00:00+08:00"),
    ("", "<time>2024-12-14</time>", "2024-12-14T00:00:00+08:00"),
])
def test_published_time_sources(head: str, body: str, expected: str) -> None:
    page = extract_page(html("<title>T</title>" + head, body + '<img src="/p.jpg" alt="A photo here">'), PAGE)
    assert page.published_time == expected
    assert page.images[0].published_time == expected


def ld(doc: object) -> str:
    return f'<script type="application/ld+json">{json.dumps(doc, ensure_ascii=False)}</script>'


@pytest.mark.parametrize("doc", [
    {"@context": "https://schema.org", "@type": "NewsArticle", "headline": "狮子",
     "datePublished": "2024-12-13T11:52:08+08:00"},
    [{"@type": "BreadcrumbList", "itemListElement": []},
     {"@type": "Article", "datePublished": "2024-12-13T11:52:08+08:00"}],
    {"@context": "https://schema.org", "@graph": [
        {"@type": "WebSite", "name": "Example"},
        {"@type": "WebPage", "mainEntity": {"@type": "Article", "datePublished": "2024-12-13 11:52:08"}}]},
])
def test_jsonld_date_published(doc: object) -> None:
    page = extract_page(html(ld(doc)), PAGE)
    assert page.published_time == "2024-12-13T11:52:08+08:00"


def test_jsonld_tolerates_comments_control_chars_and_broken_blocks() -> None:
    raw = '<!--\n{"@type": "Article", "headline": "line\nbreak", "datePublished": "2024-12-13"}\n-->'
    head = '<script type="application/ld+json">{not json</script>' \
        + f'<script type="application/ld+json">{raw}</script>'
    assert extract_page(html(head), PAGE).published_time == "2024-12-13T00:00:00+08:00"


def test_published_precedence() -> None:
    head = ('<meta property="og:updated_time" content="2024-12-20T00:00:00+08:00">'
            + ld({"@type": "Article", "datePublished": "2024-12-11T00:00:00+08:00",
                  "dateModified": "2024-12-21T00:00:00+08:00"})
            + '<meta property="article:published_time" content="2024-12-10T00:00:00+08:00">')
    body = '<time datetime="2024-12-01T00:00:00+08:00">old</time>'
    headers = {"Last-Modified": "Mon, 30 Dec 2024 00:00:00 GMT"}
    assert extract_page(html(head, body), PAGE, headers).published_time == "2024-12-10T00:00:00+08:00"
    # without the article meta, JSON-LD datePublished beats og:updated_time (publication before update)
    head2 = head.replace("article:published_time", "unrelated")
    assert extract_page(html(head2, body), PAGE, headers).published_time == "2024-12-11T00:00:00+08:00"
    # a bogus value in the first source does not hide a later good one
    head3 = '<meta property="article:published_time" content="unknown">' + head2
    assert extract_page(html(head3, body), PAGE, headers).published_time == "2024-12-11T00:00:00+08:00"
    # <time> only beats the header
    assert extract_page(html("", body), PAGE, headers).published_time == "2024-12-01T00:00:00+08:00"


def test_time_with_pubdate_preferred() -> None:
    body = ('<time datetime="2024-12-02T00:00:00+08:00">comment</time>'
            '<time pubdate datetime="2024-12-03T00:00:00+08:00">story</time>')
    assert extract_page(html("", body), PAGE).published_time == "2024-12-03T00:00:00+08:00"


def test_last_modified_header_fallback() -> None:
    body = html("<title>T</title>", '<img src="/p.jpg" alt="A photo here">').encode()
    page = extract_page(body, PAGE, {"last-modified": "Wed, 18 Dec 2024 14:24:24 GMT"})
    assert page.published_time == "2024-12-18T14:24:24+00:00"
    assert page.images[0].published_time == "2024-12-18T14:24:24+00:00"
    assert extract_page(body, PAGE, {}).published_time is None
    assert extract_page(body, PAGE).published_time is None


def test_default_tz_applies_to_page_times() -> None:
    body = html('<meta name="pubdate" content="2024-12-18 22:24:24">')
    assert extract_page(body, PAGE).published_time == "2024-12-18T22:24:24+08:00"
    assert extract_page(body, PAGE, default_tz=UTC).published_time == "2024-12-18T22:24:24+00:00"


# ------------------------------------------------------------------------------------------------ bad pages

@pytest.mark.parametrize("body", [
    b"",
    b"\x00\xff\xfe garbage \x80\x81",
    b"<html><head><title>Broken",
    b"<img src='/a.jpg' alt='Unclosed <b>tag'><a href='http://[::1'>bad url</a><a href='/ok'>ok</a><div><p></span>",
    b"<<<>>><img src=><img srcset=', , ,'><meta property='og:image' content=''><time datetime='x'>",
    "<title>str 输入</title><img src='/s.jpg' alt='From a str'>",
])
def test_malformed_pages_never_raise(body: bytes | str) -> None:
    page = extract_page(body, PAGE)
    assert page.url == PAGE
    assert isinstance(page.images, list) and isinstance(page.links, list)


def test_malformed_page_still_yields_what_it_can() -> None:
    body = (b"<html><head><title>Broken page</title><body><div><p><img src='/a.jpg' alt='Unclosed <b>tag'>"
            b"<a href='http://[::1'>bad</a><a href='/ok'>ok</a></span></table>")
    page = extract_page(body, PAGE)
    assert page.title == "Broken page"
    assert [img.image_url for img in page.images] == ["https://news.example.com/a.jpg"]
    assert page.links == ["https://news.example.com/ok"]
    page = extract_page("<title>str 输入</title><img src='/s.jpg' alt='From a str'>", PAGE)
    assert page.title == "str 输入" and page.images[0].title == "From a str"
