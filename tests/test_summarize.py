"""Generated video titles and summaries: the extractive path on real Chinese and English text, and the LLM path
against a real OpenAI-compatible HTTP server on loopback (scripted replies, recorded requests)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mmsearch.config import Settings
from mmsearch.errors import InvalidArgument
from mmsearch.ingest.summarize import (
    SUMMARY_MAX,
    SUMMARY_MAX_LATIN,
    TITLE_MAX,
    TITLE_MAX_LATIN,
    Generated,
    LlmConfig,
    Summarizer,
    VideoText,
    extractive,
)

ZH_STORY = [
    "00:00:01",
    "深夜，侦探陈默接到林小雨的电话",
    "林小雨说她的哥哥在旧仓库里失踪了",
    "陈默赶到城东的旧仓库，发现门锁被人撬开",
    "[音乐]",
    "仓库地上有一串泥泞的脚印",
    "林小雨认出脚印旁边的手表是哥哥的",
    "陈默沿着脚印找到了河边的一条小船",
    "船上留着一张写满数字的纸条",
    "林小雨说这些数字是哥哥保险箱的密码",
    "陈默和林小雨回到公寓，打开了保险箱",
    "保险箱里藏着一本走私账本",
    "原来哥哥发现了老板走私的证据，才被人绑架",
    "陈默把账本交给了警方",
    "警方根据账本在码头抓住了走私团伙",
    "林小雨的哥哥被平安救出",
    "嗯",
    "林小雨感谢陈默，陈默说这是他的工作",
]
EN_STORY = [
    "Mara, the lighthouse keeper, hears a distress call on the radio.",
    "A fishing boat is caught in the storm near the northern rocks.",
    "Mara climbs the lighthouse and turns on the great lamp.",
    "[Music]",
    "Tom, her younger brother, runs down to the harbour.",
    "The storm grows stronger and the waves break over the pier.",
    "Tom takes the rescue boat out into the storm.",
    "Mara guides him by radio past the rocks.",
    "The fishing boat's engine has failed and it is drifting.",
    "Tom throws a rope to the fishermen.",
    "He tows the fishing boat slowly toward the harbour.",
    "Mara keeps the lamp burning all night.",
    "At dawn the storm ends.",
    "The fishermen thank Tom and Mara at the harbour.",
    "Mara tells Tom that their father would be proud.",
]
KEY = "sk-test-0123456789-secret"


def _in_order(pieces: list[str], source: str) -> None:
    """Each piece is a substring of the source, and they appear in the source in this order."""
    at = 0
    for piece in pieces:
        found = source.find(piece, at)
        assert found >= 0, f"{piece!r} is not in the source after position {at}"
        at = found + len(piece)


# -- extractive ---------------------------------------------------------------------------------------------------


def test_chinese_story_title_and_summary() -> None:
    text = VideoText(transcript=ZH_STORY, screen=[], own=["侦探陈默第一集"])
    g = extractive(text)
    assert g.method == "extractive" and g.warning is None
    assert 0 < len(g.title) <= TITLE_MAX
    assert "陈默" in g.title or "林小雨" in g.title
    assert g.title != "侦探陈默第一集"
    assert 0 < len(g.summary) <= SUMMARY_MAX and g.summary.endswith("。")
    pieces = [p for p in re.split(r"[，。]", g.summary) if p]
    assert len(pieces) >= 3
    _in_order(pieces, "\n".join(ZH_STORY))  # transcript sentences, in time order
    assert "00:00:01" not in g.summary and "音乐" not in g.summary and "嗯" not in pieces
    assert extractive(text) == g  # deterministic


def test_english_story_title_and_summary() -> None:
    g = extractive(VideoText(transcript=EN_STORY, screen=[], own=["The Keeper, episode 1"]))
    assert g.method == "extractive"
    assert 0 < len(g.title) <= TITLE_MAX_LATIN
    story_words = {w.lower() for w in re.findall(r"[\w']+", " ".join(EN_STORY))}
    assert all(w.lower() in story_words for w in re.findall(r"[\w']+", g.title))  # whole words, no cut word
    assert "Mara" in g.title or "Tom" in g.title
    assert 0 < len(g.summary) <= SUMMARY_MAX_LATIN and g.summary.endswith(".")
    sentences = [s for s in g.summary[:-1].split(". ") if s]
    assert len(sentences) >= 3 and "[Music]" not in g.summary
    _in_order(sentences, " ".join(EN_STORY))
    assert extractive(VideoText(EN_STORY, [], [])) == extractive(VideoText(EN_STORY, [], []))


def test_duplicate_lines_appear_once() -> None:
    line = "陈默把账本交给了警方"
    transcript = [line, "林小雨的哥哥被平安救出", f"{line}！", "警方根据账本在码头抓住了走私团伙", f" {line} "]
    g = extractive(VideoText(transcript=transcript, screen=[line, "林小雨的哥哥 被平安救出"], own=[]))
    assert g.summary.count(line) == 1
    assert g.summary.count("平安救出") == 1
    en = extractive(VideoText(["Tom throws a rope to the fishermen.", "Tom throws a rope to the fishermen",
                               "The fishermen thank Tom."], ["TOM THROWS A ROPE TO THE FISHERMEN"], []))
    assert en.summary.lower().count("throws a rope") == 1


def test_screen_text_counts() -> None:
    g = extractive(VideoText(transcript=[], screen=["陈默在码头抓住了走私团伙", "走私团伙的老板被警方带走"], own=[]))
    assert g.method == "extractive" and g.title and "走私团伙" in g.summary


def test_only_own_text_still_gives_something() -> None:
    own = ["山村教师第三集", "李老师带着孩子们在暴雨中修好了学校的屋顶。村长送来了新课本。"]
    g = extractive(VideoText([], [], own))
    assert g.method == "extractive"
    assert g.title and g.title != "山村教师第三集" and len(g.title) <= TITLE_MAX
    assert "李老师" in g.summary
    title_only = extractive(VideoText([], [], ["侦探陈默第一集"]))
    assert title_only.title and title_only.title != "侦探陈默第一集" and title_only.summary


def test_nothing_gives_none() -> None:
    assert extractive(VideoText([], [], [])) == Generated("", "", "none")
    assert extractive(VideoText(["00:01:02", "  ", "12"], ["[Music]"], [""])).method == "none"
    assert extractive(VideoText(["嗯"], [], [])).title == "嗯"  # a fragment is still text: never an empty title


def test_long_sentence_is_cut_at_a_boundary() -> None:
    long_en = " ".join(["The engineers laid the transatlantic telegraph cable across the ocean floor"] * 8)
    g = extractive(VideoText([long_en], [], []))
    assert len(g.summary) <= SUMMARY_MAX_LATIN and g.summary.endswith("…")
    assert g.summary[:-1].split()[-1] in long_en.split()  # a whole word before the ellipsis
    long_zh = "叶文洁制造故障引雷志成和杨卫宁下悬崖并锯断绳子" * 12
    assert len(extractive(VideoText([long_zh], [], [])).summary) <= SUMMARY_MAX


# -- the LLM path -------------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    content: Any = None  # the assistant message's content (None: no message at all)
    delay_s: float = 0.0
    raw: str | None = None  # the whole body instead


@dataclass
class FakeLLM:
    url: str
    replies: list[Reply]  # the next requests' replies; the last one repeats
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    fake = FakeLLM(url="", replies=[Reply(content=json.dumps({"title": "标题", "summary": "摘要"}))])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            fake.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
            reply = fake.replies.pop(0) if len(fake.replies) > 1 else fake.replies[0]
            time.sleep(reply.delay_s)
            if reply.raw is not None:
                out = reply.raw.encode()
            else:
                out = json.dumps({"id": "x", "object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": reply.content}}]}).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
            except OSError:  # the client gave up (the timeout test)
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1/"
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _quick_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Summarizer, "RETRY_BACKOFF_S", 0.05)


def _summarizer(fake: FakeLLM, **kw: Any) -> Summarizer:
    return Summarizer(LlmConfig(url=fake.url, model="qwen2.5-7b-instruct", api_key=KEY, **kw))


def _answer(title: str, summary: str) -> str:
    return json.dumps({"title": title, "summary": summary}, ensure_ascii=False)


def test_llm_request_and_answer(llm: FakeLLM) -> None:
    llm.replies = [Reply(content=_answer("陈默" * 40, "林小雨的哥哥被救出。" * 40))]
    with _summarizer(llm) as s:
        g = s.generate(VideoText(ZH_STORY, ["城东旧仓库"], ["侦探陈默第一集"]))
    assert g.method == "llm" and g.warning is None
    assert g.title.startswith("陈默陈默") and len(g.title) <= TITLE_MAX  # capped
    assert g.summary.startswith("林小雨的哥哥被救出。") and len(g.summary) <= SUMMARY_MAX
    [req] = llm.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {KEY}"
    body = req["json"]
    assert body["model"] == "qwen2.5-7b-instruct" and body["temperature"] == 0.2
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system["role"] == "system" and "JSON" in system["content"] and "30" in system["content"]
    assert user["role"] == "user"
    for line in (ZH_STORY[1], ZH_STORY[-1], "城东旧仓库", "侦探陈默第一集"):
        assert line in user["content"]


def test_llm_answer_in_a_fence_and_english(llm: FakeLLM) -> None:
    title = "Tom rescues a fishing boat while Mara keeps the lighthouse lamp burning through the storm"
    llm.replies = [Reply(content=f"```json\n{_answer(title, 'Mara guides Tom by radio. ' * 30)}\n```")]
    g = _summarizer(llm).generate(VideoText(EN_STORY, [], []))
    assert g.method == "llm"
    assert len(g.title) <= TITLE_MAX_LATIN and g.title.endswith("…")
    assert g.title[:-1].split()[-1] in title.split()  # cut between words
    assert len(g.summary) <= SUMMARY_MAX_LATIN and g.summary.endswith("radio.")  # cut after a sentence


def test_llm_input_is_truncated_and_sampled_over_the_whole_video(llm: FakeLLM) -> None:
    transcript = [f"第{i}句：侦探陈默在第{i}个地点找到了新的线索" for i in range(400)]
    _summarizer(llm, max_input_chars=2_000).generate(VideoText(transcript, [], ["侦探陈默第一集"]))
    user = llm.requests[0]["json"]["messages"][1]["content"]
    assert len(user) <= 2_000
    assert transcript[0] in user and "侦探陈默第一集" in user
    sent = [int(n) for n in re.findall(r"第(\d+)句", user)]
    assert 20 < len(sent) < 400 and sent == sorted(sent)
    assert max(sent) >= 360  # the end of the video is there, not only its start


def test_llm_retries_a_500_once(llm: FakeLLM) -> None:
    llm.replies = [Reply(status=500, raw="{}"), Reply(content=_answer("陈默破案", "陈默找到账本，警方抓住走私团伙。"))]
    g = _summarizer(llm).generate(VideoText(ZH_STORY, [], []))
    assert (g.method, g.title, g.warning) == ("llm", "陈默破案", None)
    assert len(llm.requests) == 2


@pytest.mark.parametrize(("reply", "requests", "said"), [
    (Reply(status=500, raw=f'{{"error": "bad key {KEY}"}}'), 2, "HTTP 500"),
    (Reply(status=429, raw="{}"), 2, "HTTP 429"),
    (Reply(status=401, raw=f'{{"error": "bad key {KEY}"}}'), 1, "HTTP 401"),
    (Reply(content="这不是 JSON"), 1, "not JSON"),
    (Reply(content=json.dumps({"title": "陈默破案"})), 1, "'summary'"),
    (Reply(content=_answer("陈默破案", "  ")), 1, "'summary'"),
    (Reply(content=json.dumps(["陈默破案", "摘要"])), 1, "not a JSON object"),
    (Reply(raw="<html>gateway</html>"), 1, "not a chat completion"),
    (Reply(content=None), 1, "no text content"),
])
def test_llm_failures_fall_back_to_extractive(llm: FakeLLM, reply: Reply, requests: int, said: str) -> None:
    llm.replies = [reply]
    g = _summarizer(llm).generate(VideoText(ZH_STORY, [], []))
    assert g.method == "extractive"
    assert (g.title, g.summary) == (extractive(VideoText(ZH_STORY, [], [])).title,
                                    extractive(VideoText(ZH_STORY, [], [])).summary)
    assert g.warning is not None and said in g.warning and KEY not in g.warning
    assert len(llm.requests) == requests


def test_llm_timeout_falls_back_after_one_retry(llm: FakeLLM) -> None:
    llm.replies = [Reply(content=_answer("t", "s"), delay_s=1.0)]
    started = time.monotonic()
    g = _summarizer(llm, timeout_s=0.5).generate(VideoText(EN_STORY, [], []))
    assert time.monotonic() - started < 2.5
    assert g.method == "extractive" and g.title and g.summary
    assert g.warning is not None and "Timeout" in g.warning and KEY not in g.warning
    assert len(llm.requests) == 2


def test_llm_unreachable_falls_back() -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = LlmConfig(f"http://127.0.0.1:{port}/v1", "m", KEY, timeout_s=2)
    g = Summarizer(config).generate(VideoText(EN_STORY, [], []))
    assert g.method == "extractive" and g.warning is not None and "ConnectError" in g.warning


def test_llm_not_asked_without_text(llm: FakeLLM) -> None:
    g = _summarizer(llm).generate(VideoText([], ["00:12"], []))
    assert g == Generated("", "", "none") and llm.requests == []


def test_no_key_no_authorization_header(llm: FakeLLM) -> None:
    Summarizer(LlmConfig(llm.url, "m")).generate(VideoText(EN_STORY, [], []))
    assert "Authorization" not in llm.requests[0]["headers"]


def test_llm_config_from_settings() -> None:
    assert LlmConfig.from_settings(Settings(llm_url="")) is None
    assert LlmConfig.from_settings(Settings(llm_url="  ")) is None
    settings = Settings(llm_url="http://127.0.0.1:8000/v1/", llm_model="qwen", llm_api_key=KEY, llm_timeout_s=5,
                        llm_max_input_chars=4_000)
    config = LlmConfig.from_settings(settings)
    assert config == LlmConfig("http://127.0.0.1:8000/v1", "qwen", KEY, 5.0, 4_000)
    assert KEY not in repr(settings) and KEY not in repr(config)
    with pytest.raises(InvalidArgument, match="llm_url"):
        LlmConfig.from_settings(Settings(llm_url="127.0.0.1:8000/v1", llm_model="qwen"))
    with pytest.raises(InvalidArgument, match="llm_model"):
        LlmConfig.from_settings(Settings(llm_url="http://127.0.0.1:8000/v1"))
