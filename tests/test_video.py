"""Video datasets end to end: real videos made with PyAV, the tiny CLIP model, RapidOCR, the HTTP API.

What a user of a video library expects: a word said (subtitles) or shown (on-screen text) finds its video and
says when; a scene is found by the image model at the right moment; each video has a generated title and
summary drawn from its content; a broken video is a warning, never a failed import; and the spec's video
request answers in the spec's shape.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import tiny_clip
from api_fixtures import ADMIN
from live import LiveServer
from mmsearch.api.app import create_app
from mmsearch.cli import app as cli
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders.clip import load_clip
from mmsearch.search import SearchRequest
from render import WQY_FONT
from videos import Scene, corrupt_copy, make_video, write_srt

pytestmark = pytest.mark.skipif(not WQY_FONT.exists(), reason="fonts-wqy-microhei is not installed")

SCHEMA = {"fields": [
    {"name": "content_id", "type": "string", "primary_key": True},
    {"name": "my_title", "type": "string", "searchable": True},
    {"name": "director", "type": "string", "filterable": True},
    {"name": "parent_content_id", "type": "string", "filterable": True},
    {"name": "sequence_index", "type": "int32", "filterable": True, "sortable": True},
    {"name": "video_url", "type": "video"},
    {"name": "subtitle_url", "type": "subtitle"},
]}
BLUE = (20, 40, 220)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Four episodes of a series (and one broken file), imported into a video dataset."""
    root = tmp_path_factory.mktemp("videos")
    make_video(root / "ep1.mkv", [
        Scene(3, (200, 30, 30)), Scene(3, BLUE), Scene(3, (240, 240, 240), text="斑马 ZEBRA"),
    ])
    make_video(root / "ep2.mkv", [Scene(4, (230, 200, 40)), Scene(4, (40, 160, 60))],
               subtitles=[(1.0, 3.0, "一只海豚跳出水面"), (5.0, 7.0, "The dolphin swims away")])
    make_video(root / "ep3.mkv", [Scene(6, (60, 60, 60), band="欢迎来到长城")])
    make_video(root / "ep4.mkv", [Scene(4, (120, 80, 160))])
    write_srt(root / "ep4.srt", [(0.5, 2.5, "宇宙飞船降落在月球")])
    corrupt_copy(root / "ep1.mkv", root / "broken.mkv")
    model = tiny_clip.build_immich(root / "model")
    home = root / "home"
    mm = MMSearch(Settings(home=home, media_roots=str(root), admin_token=ADMIN, ocr_workers=1),
                  encoder=load_clip(str(model)))
    info = mm.create_dataset("series", SCHEMA, type="video")
    items = [
        {"content_id": f"video_90002{n}", "my_title": f"三体第二十{'一二三四五'[n - 1]}集", "director": d,
         "parent_content_id": "collection_342534", "sequence_index": 20 + n, "video_url": [str(root / f"ep{n}.mkv")],
         **({"subtitle_url": str(root / "ep4.srt")} if n == 4 else {})}
        for n, d in ((1, "郭帆"), (2, "郭帆"), (3, "杨磊"), (4, "郭帆"))
    ]
    items.append({"content_id": "video_broken", "my_title": "损坏的一集", "director": "郭帆",
                  "video_url": [str(root / "broken.mkv")]})
    report = mm.import_items("series", items)
    return mm, info, report, root


def ids(result) -> list[str]:
    return [h.id for h in result.hits]


def test_import_reads_every_video_and_warns_about_the_broken_one(library):
    mm, _, report, _ = library
    assert (report.imported, report.rejected) == (5, 0)
    broken = [w for w in report.warnings if w.id == "video_broken"]
    assert broken and broken[0].field == "video_url" and broken[0].rule == "video"
    assert report.videos["videos"] >= 4 and report.videos["segments"] >= 6
    # the broken item is still searchable by its own text
    assert ids(mm.search("series", SearchRequest(text="损坏")))[:1] == ["video_broken"]


def test_a_word_shown_only_on_screen_finds_its_video_and_says_when(library):
    mm = library[0]
    hits = mm.search("series", SearchRequest(text="斑马")).hits
    assert hits and hits[0].id == "video_900021"
    moments = hits[0].fields["_video_moments"]
    ocr = [m for m in moments if m["reason"] == "ocr"]
    assert ocr and 5.5 <= ocr[0]["start"] <= 9.0 and "斑马" in ocr[0]["text"]


def test_a_word_only_in_the_subtitle_stream_finds_its_video(library):
    mm = library[0]
    for query, start in (("海豚", 1.0), ("dolphin", 5.0)):
        hits = mm.search("series", SearchRequest(text=query)).hits
        assert hits and hits[0].id == "video_900022", query
        said = [m for m in hits[0].fields["_video_moments"] if m["reason"] == "subtitle"]
        assert said and said[0]["start"] == pytest.approx(start, abs=0.05)


def test_burned_in_subtitles_and_sidecar_files_are_read(library):
    mm = library[0]
    assert ids(mm.search("series", SearchRequest(text="长城")))[:1] == ["video_900023"]
    hits = mm.search("series", SearchRequest(text="宇宙飞船")).hits
    assert hits[0].id == "video_900024"
    assert hits[0].fields["_video_moments"][0]["start"] == pytest.approx(0.5, abs=0.05)


def test_a_colour_scene_is_found_through_the_vlm_channel_at_the_right_moment(library):
    mm = library[0]
    query = mm.encoder.encode_image([Image.new("RGB", (320, 180), BLUE)])[0]
    result = mm.search("series", SearchRequest(vector=query, channels=("vlm",)))
    top = result.hits[0]
    assert top.id == "video_900021"
    vlm = [m for m in top.fields["_video_moments"] if m["reason"] == "vlm"]
    assert vlm[0]["start"] == pytest.approx(3.0, abs=0.6) and vlm[0]["end"] == pytest.approx(6.0, abs=0.6)
    # the score is the best segment's, not a mean over the video's segments
    segments = mm.store.serving_index(library[1]).moments
    assert top.recall["vlm"] == pytest.approx(vlm[0]["score"], abs=1e-3)
    assert segments is not None and segments.n >= 6


def test_generated_fields_come_from_the_content(library):
    mm = library[0]
    doc = mm.get("series", ["video_900022"])[0]
    assert doc["content_type"] == "video"
    title, summary = doc["_video_generated_title"], doc["_video_generated_summary"]
    assert title and summary
    assert "海豚" in title + summary or "dolphin" in (title + summary).lower()
    # searchable: a word of the generated summary finds the video
    word = "海豚" if "海豚" in summary else "dolphin"
    assert "video_900022" in ids(mm.search("series", SearchRequest(text=word)))


def test_filters_sort_and_pages_work_on_videos(library):
    mm = library[0]
    where = {"op": "must", "field": "director", "conds": ["郭帆"]}
    text = ("text",)  # the vlm channel ranks every video with segments (the broken one's first 6 s too)
    ordered = mm.search("series", SearchRequest(text="三体", filter=where, sort_by="sequence_index", sort_order="asc",
                                                channels=text))
    assert ids(ordered) == ["video_900021", "video_900022", "video_900024"]
    second = mm.search("series", SearchRequest(text="三体", filter=where, sort_by="sequence_index",
                                               sort_order="asc", page_number=2, page_size=2, channels=text))
    assert ids(second) == ["video_900024"]
    both = mm.search("series", SearchRequest(text="三体", filter=where, sort_by="sequence_index", sort_order="desc"))
    assert ids(both)[:3] == ["video_900024", "video_900022", "video_900021"]  # items without the key go last
    only = mm.search("series", SearchRequest(text="海豚", output_fields=["my_title"]))
    assert set(only.hits[0].fields) == {"my_title"}


def test_spec_video_request_answers_in_the_spec_shape(library):
    mm = library[0]
    mm.catalog.apps.create("drama", ["series"], {})
    key = mm.catalog.keys.create(["drama"], name="tests").key
    with LiveServer(create_app(mm)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        body = {"query": {"text": "三体"}, "page_number": 1, "page_size": 5, "user": {"_user_id": "ldy_199432"},
                "filter": {"op": "must", "field": "director", "conds": ["郭帆"]}, "dataset_id": "series",
                "context": {"location": {"latitude": "12.12", "longitude": "-13.43"}}}
        headers = {"Authorization": f"Bearer {key}"}
        r = client.post("/api/v1/application/drama/search", json=body, headers=headers)
        assert r.status_code == 200, r.text
        result = r.json()["result"]
        assert result["total_items"] == 4  # the broken episode too: it is searchable by its title
        first = result["search_results"][0]
        assert set(first) >= {"_id", "display_fields", "score", "recall_info"}
        shown = first["display_fields"]
        assert shown["content_type"] == "video" and shown["parent_content_id"] == "collection_342534"
        assert {"_video_generated_title", "_video_generated_summary", "sequence_index", "video_url"} <= set(shown)
        # image queries on a video application are refused, as the spec says
        png = io.BytesIO()
        Image.new("RGB", (32, 32), BLUE).save(png, "PNG")
        uri = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
        image = {"query": {"image_url": uri}, "dataset_id": "series"}
        refused = client.post("/api/v1/application/drama/search", json=image, headers=headers)
        assert refused.status_code == 400 and "video" in refused.text


def test_the_serving_snapshot_keeps_the_segments(library, tmp_path):
    from mmsearch.store.serving import snapshot

    mm, info, _, _ = library
    index = mm.store.serving_index(info)
    saved = snapshot.save(index, tmp_path)
    loaded = snapshot.load(saved, info)
    assert loaded is not None and loaded.moments is not None
    assert loaded.moments.n == index.moments.n
    q = mm.encoder.encode_image([Image.new("RGB", (320, 180), BLUE)])[0]
    assert loaded.video_search(q, 3, None)[0] == index.video_search(q, 3, None)[0]
    assert np.array_equal(loaded.moments.times.view(), index.moments.times.view())
    row = index.live_row("video_900022")
    assert loaded.cues_of([row]) == index.cues_of([row]) and index.cues_of([row])[0][0]["text"]


def test_rerank_reads_media_without_the_transcript(library):
    """A long video's timed lines are kept apart from the media rerank parses for its top 50 hits; the shown
    page reads them (`Store.video_cues`) to say where the query's words are."""
    mm, info, _, _ = library
    features = mm.store.rerank_features(info, ["video_900022"])["video_900022"]
    video = [m for m in features.media if m.get("kind") == "video"]
    assert video and "cues" not in video[0] and video[0]["segments"] >= 2
    cues = mm.store.video_cues(info, ["video_900022", "nope"])
    assert list(cues) == ["video_900022"]
    lines = cues["video_900022"][0]
    said = [t for t, why in zip(lines["text"], lines["source"], strict=True) if why == "subtitle"]
    assert said[:1] == ["一只海豚跳出水面"]
    assert lines["start"][lines["text"].index(said[0])] == pytest.approx(1.0, abs=0.05)


def test_cli_inspect_shows_what_will_be_indexed(library):
    root = library[3]
    env = {"MMSEARCH_HOME": str(root / "cli-home"), "MMSEARCH_CLIP_MODEL": "none", "MMSEARCH_OCR_WORKERS": "1"}
    r = CliRunner().invoke(cli, ["video", "inspect", str(root / "ep2.mkv"), "--json"], env=env)
    assert r.exit_code == 0, r.output
    found = json.loads(r.stdout)
    assert found["probe"]["duration"] == pytest.approx(8.0, abs=0.3)
    assert [c["text"] for c in found["transcript"] if c["source"] == "subtitle"][:1] == ["一只海豚跳出水面"]
    assert len(found["segments"]) >= 2 and found["_video_generated_title"]
    bad = CliRunner().invoke(cli, ["video", "inspect", str(root / "broken.mkv"), "--json"], env=env)
    assert bad.exit_code != 0 or json.loads(bad.stdout)["problem"]


def test_a_video_dataset_made_before_segments_gets_their_columns(tmp_path):
    """A table created without the segment columns (an older mmsearch) gains them when opened."""
    import lancedb
    import pyarrow as pa

    from mmsearch.store.lance import arrow_schema, segment_fields

    mm = MMSearch(Settings(home=tmp_path, ocr=False, clip_model="none"))
    info = mm.create_dataset("old", SCHEMA, type="video", vector_dim=8)
    db = lancedb.connect(str(tmp_path / "tables"))
    db.drop_table("old")
    names = {f.name for f in segment_fields(info)}
    db.create_table("old", schema=pa.schema([f for f in arrow_schema(info) if f.name not in names]))
    fresh = MMSearch(Settings(home=tmp_path, ocr=False, clip_model="none"))
    report = fresh.import_items("old", [{"content_id": "a", "my_title": "旧的一集"}])
    assert report.imported == 1
    assert ids(fresh.search("old", SearchRequest(text="旧的"))) == ["a"]


@pytest.fixture(scope="module")
def media_server(library):
    """The videos served over HTTP on loopback (a real server: range requests and all, as a CDN would)."""
    root = library[3]
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_video_urls_are_streamed_through_the_guarded_fetcher(library, media_server, tmp_path):
    schema = {"fields": [{"name": "id", "type": "string", "primary_key": True},
                         {"name": "video_url", "type": "video"}, {"name": "subtitle_url", "type": "subtitle"}]}
    item = {"id": "remote", "video_url": f"{media_server}/ep2.mkv", "subtitle_url": f"{media_server}/ep4.srt"}
    # by default a private address is refused: a warning on the item, which still imports
    guarded = MMSearch(Settings(home=tmp_path / "a", ocr=False, clip_model="none"))
    guarded.create_dataset("remote", schema, type="video", vector_dim=8)
    report = guarded.import_items("remote", [dict(item)])
    assert report.imported == 1
    assert {w.rule for w in report.warnings} >= {"video", "subtitle"}
    assert "127.0.0.1" in next(w.message for w in report.warnings if w.rule == "video")
    # allowed, the file is downloaded (to a temporary file, removed after) and indexed like a local one
    allowed = MMSearch(Settings(home=tmp_path / "b", ocr=False, clip_model="none", allow_private_networks=True))
    allowed.create_dataset("remote", schema, type="video", vector_dim=8)
    report = allowed.import_items("remote", [dict(item)])
    assert (report.imported, report.warnings) == (1, [])
    assert ids(allowed.search("remote", SearchRequest(text="海豚"))) == ["remote"]
    assert ids(allowed.search("remote", SearchRequest(text="宇宙飞船"))) == ["remote"]
    # a byte cap smaller than the file: a warning naming the limit
    capped = MMSearch(Settings(home=tmp_path / "c", ocr=False, clip_model="none", allow_private_networks=True,
                               video_max_bytes=2_048))
    capped.create_dataset("remote", schema, type="video", vector_dim=8)
    report = capped.import_items("remote", [{"id": "big", "video_url": f"{media_server}/ep2.mkv"}])
    assert report.imported == 1 and "over the limit of 2048" in report.warnings[0].message


def test_generated_fields_from_a_configured_chat_model(library, tmp_path):
    """With MMSEARCH_LLM_URL set, the title and summary are the chat model's; the request carries the transcript."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            answer = json.dumps({"title": "海豚表演", "summary": "一只海豚跳出水面，然后游走了。"}, ensure_ascii=False)
            body = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        root = library[3]
        mm = MMSearch(Settings(home=tmp_path, ocr=False, clip_model="none", media_roots=str(root),
                               llm_url=f"http://127.0.0.1:{server.server_address[1]}/v1", llm_model="tiny-chat"))
        mm.create_dataset("llm", SCHEMA, type="video", vector_dim=8)
        report = mm.import_items("llm", [{"content_id": "v", "my_title": "第二集", "video_url": str(root / "ep2.mkv")}])
        assert (report.imported, report.warnings) == (1, [])
    finally:
        server.shutdown()
        server.server_close()
    doc = mm.get("llm", ["v"])[0]
    assert doc["_video_generated_title"] == "海豚表演"
    assert doc["_video_generated_summary"] == "一只海豚跳出水面，然后游走了。"
    assert seen[0]["model"] == "tiny-chat" and "一只海豚跳出水面" in seen[0]["messages"][-1]["content"]
    assert ids(mm.search("llm", SearchRequest(text="表演"))) == ["v"]  # the generated title is searched


def test_a_video_import_job_reports_progress_and_checkpoints_per_video(library, tmp_path):
    """`mmsearch import` of a video dataset: each video is a batch (the job resumes at the video it stopped in),
    and the progress callback sees frames decoded and segments found as the video is read."""
    from mmsearch.ingest.jobs import run_file_import

    root = library[3]
    mm = MMSearch(Settings(home=tmp_path, ocr=False, media_roots=str(root)), encoder=library[0].encoder)
    mm.create_dataset("jobbed", SCHEMA, type="video")
    source = tmp_path / "items.jsonl"
    source.write_text("\n".join(json.dumps({"content_id": f"e{n}", "my_title": f"第{n}集",
                                            "video_url": str(root / f"ep{n}.mkv")}) for n in (1, 2, 3)))
    seen, done = [], []
    job, report = run_file_import(mm, "jobbed", source, on_progress=lambda j: done.append(j.done),
                                  on_video=seen.append)
    assert job.status == "succeeded" and report.imported == 3
    assert done == [1, 2, 3]  # one checkpoint per video
    assert {p.item for p in seen} == {"e1", "e2", "e3"}
    frames = [p.frames for p in seen if p.item == "e1"]
    assert frames == sorted(frames) and frames[-1] >= 80  # 9 s at 10 fps, counted as they are decoded
    assert max(p.segments for p in seen if p.item == "e1") >= 2
    assert report.videos["segments"] >= 6 and mm.store.serving_index(mm.dataset("jobbed")).moments.n >= 6


def test_spelling_and_rerank_work_on_a_video_application(library):
    """The application's spell correction knows the words said in the videos (their transcripts are indexed
    text), and the rerank stage scores videos (a video's semantic signal is its best segment's)."""
    mm = library[0]
    mm.catalog.apps.create("spelled", ["series"], {"spell_correction": "auto", "rerank": True})
    found = mm.search_app("spelled", "series", SearchRequest(text="海屯"))
    assert found.corrected_query == "海豚"
    assert found.result.hits[0].id == "video_900022" and found.result.hits[0].is_reranked
    said = [m for m in found.result.hits[0].fields["_video_moments"] if m["reason"] == "subtitle"]
    assert said and said[0]["start"] == pytest.approx(1.0, abs=0.05)


def test_video_items_posted_to_the_management_api_import_as_a_job(library, tmp_path):
    """The server's worker imports a video dataset's items one video per batch; the job says how far it got."""
    from api_fixtures import wait_job

    root = library[3]
    mm = MMSearch(Settings(home=tmp_path, ocr=False, media_roots=str(root), admin_token=ADMIN),
                  encoder=library[0].encoder)
    with LiveServer(create_app(mm)) as server, httpx.Client(
            base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        r = admin.post("/admin/v1/datasets", json={"id": "clips", "type": "video", "schema": SCHEMA})
        assert r.status_code in (200, 201), r.text
        items = [{"content_id": f"c{n}", "my_title": f"片段{n}", "video_url": str(root / f"ep{n}.mkv")}
                 for n in (1, 2, 3)]
        items.append({"content_id": "bad", "my_title": "坏", "video_url": "http://10.0.0.1/x.mp4"})
        r = admin.post("/admin/v1/datasets/clips/items", json=items)
        assert r.status_code == 202, r.text
        job = wait_job(admin, r.json()["job_id"], timeout=120)
        assert job["status"] == "succeeded"
        assert (job["progress"]["processed"], job["progress"]["imported"]) == (4, 4)
        warned = [w for w in job.get("warnings", []) if w["id"] == "bad"]
        assert warned and "10.0.0.1" in warned[0]["message"]  # a private address: refused, the item still in
    assert [h.id for h in mm.search("clips", SearchRequest(text="海豚")).hits][:1] == ["c2"]


def test_text_moments_rank_lines_by_the_share_of_query_words_they_hold():
    from mmsearch.search.moments import query_words, text_moments

    entry = {"field": "video_url", "kind": "video", "start": [0.0, 4.0, 9.0, 12.0], "end": [3.0, 8.0, 11.0, 15.0],
             "text": ["一只海豚", "ＤＯＬＰＨＩＮ 海豚 show", "OCR 第一行\n海豚 dolphin", "nothing"],
             "source": ["subtitle", "subtitle", "ocr", "subtitle"]}
    found = text_moments(query_words(["海豚", "dolphin", "the"]), [entry])  # "the" is a stop word
    assert [(m["start"], m["reason"], m["score"]) for m in found] == [(4.0, "subtitle", 1.0), (9.0, "ocr", 1.0),
                                                                        (0.0, "subtitle", 0.5)]
    assert found[1]["text"] == "OCR 第一行\n海豚 dolphin"  # a line read as two OCR lines is still one line
    assert text_moments([], [entry]) == [] and text_moments(["鲸鱼"], [entry]) == []


def test_a_video_library_on_milvus_answers_as_the_embedded_store(library):
    """MMSEARCH_STORE=milvus:…: the same videos imported into Milvus Lite (through its gRPC server) give the same
    videos in the same order, with the same moments, for words said, words shown, a scene, a filter and a sort;
    rerank reads a video's best segment and deleting a video takes its segments and transcript with it."""
    pytest.importorskip("milvus_lite")
    from milvus_lite.server_manager import server_manager_instance

    mm, info, _, root = library
    uri = str(root / "milvus" / "mm.db")
    (root / "milvus").mkdir(exist_ok=True)
    other = MMSearch(Settings(home=root / "milvus-home", media_roots=str(root), admin_token=ADMIN, ocr_workers=1,
                              store=f"milvus:{uri}"), encoder=mm.encoder)
    try:
        other.create_dataset("series", SCHEMA, type="video")
        items = [{"content_id": d["content_id"], **{k: v for k, v in d.items() if k != "content_id"}}
                 for d in mm.store.get(info, [f"video_90002{n}" for n in range(1, 5)] + ["video_broken"])]
        report = other.import_items("series", items)
        assert (report.imported, report.rejected) == (5, 0)
        assert other.stats("series")["segments"] == mm.store.serving_index(info).moments.n
        blue = mm.encoder.encode_image([Image.new("RGB", (320, 180), BLUE)])[0]
        guo = {"op": "must", "field": "director", "conds": ["郭帆"]}
        requests = [SearchRequest(text=t) for t in ("斑马", "海豚", "dolphin", "长城", "宇宙飞船", "三体", "损坏")]
        requests += [SearchRequest(vector=blue, channels=("vlm",)), SearchRequest(vector=blue, filter=guo),
                     SearchRequest(text="三体", sort_by="sequence_index", sort_order="desc", page_size=3)]
        for req in requests:
            want, got = mm.search("series", req), other.search("series", req)
            assert ids(got) == ids(want), req
            for a, b in zip(want.hits, got.hits, strict=True):
                moments = [(m["reason"], m["start"]) for m in a.fields.get("_video_moments", [])]
                assert [(m["reason"], m["start"]) for m in b.fields.get("_video_moments", [])] == moments, req
                assert b.recall.get("vlm", 0.0) == pytest.approx(a.recall.get("vlm", 0.0), abs=1e-4), req
        for engine in (mm, other):  # rerank reads each video's segment nearest the (text's) query vector
            engine.catalog.apps.create("reranked", ["series"], {"rerank": True})
        want, got = (e.search_app("reranked", "series", SearchRequest(text="三体第二十一集")).result.hits
                     for e in (mm, other))
        assert [h.id for h in got] == [h.id for h in want] and got[0].is_reranked
        # the semantic signal is the same: Milvus sends the segment nearest the query, the embedded store all of
        # them (the rerank scores themselves differ by the text channel's BM25, summed per field on Milvus)
        q = mm.encoder.encode_text(["三体第二十一集"])[0]
        best = [{i: float(np.max(f.vector @ q)) for i, f in e.store.rerank_features(
            e.dataset("series"), [h.id for h in want], q).items()} for e in (mm, other)]
        assert best[1] == pytest.approx(best[0], abs=1e-5) and len(best[1]) == 5
        other.delete("series", ["video_900021"])
        assert "video_900021" not in ids(other.search("series", SearchRequest(vector=blue, channels=("vlm",))))
        assert other.store.video_cues(other.dataset("series"), ["video_900021"]) == {}
    finally:
        other.store.client.close()
        server_manager_instance.release_server(uri)
