"""The fetcher against a real HTTP server on loopback, and the SSRF guard's refusals (made before connecting)."""

from __future__ import annotations

import io
import ipaddress
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from mmsearch.media import USER_AGENT, FetchConfig, Fetcher, FetchError, UnsafeURL, address_problem, resolve_target

PNG = (lambda b: (Image.new("RGB", (32, 24), (10, 200, 30)).save(b, "PNG"), b.getvalue())[1])(io.BytesIO())


class State:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.headers: dict[str, dict[str, str]] = {}
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.other_port = 0  # port of the second server, on 127.0.0.2


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def send_body(self, body: bytes, ctype: str = "image/png", status: int = 200, length: bool = True):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def redirect(self, location: str, status: int = 302):
            self.send_response(status)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            path = self.path
            with state.lock:
                state.hits[path] += 1
                hits = state.hits[path]
                state.headers[path] = dict(self.headers.items())
            if path in ("/img.png", "/echo"):
                self.send_body(PNG)
            elif path == "/wrong-ctype":
                self.send_body(PNG, ctype="text/plain")
            elif path.startswith("/chain/"):
                n = int(path.rsplit("/", 1)[1])
                self.redirect("/img.png" if n == 0 else f"/chain/{n - 1}", 301 if n % 2 else 307)
            elif path == "/loop":
                self.redirect("/loop")
            elif path == "/404":
                self.send_body(b"nope", "text/plain", 404)
            elif path == "/flaky":
                if hits == 1:
                    self.send_body(b"busy", "text/plain", 503)
                else:
                    self.send_body(PNG)
            elif path == "/always503":
                self.send_body(b"busy", "text/plain", 503)
            elif path == "/slow":
                time.sleep(1.0)
                self.send_body(PNG)
            elif path == "/big-declared":
                self.send_body(PNG + b"\0" * 300_000)
            elif path == "/big-stream":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()
                try:
                    self.wfile.write(PNG[:16])
                    for _ in range(50):
                        self.wfile.write(b"\0" * 10_000)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            elif path == "/html-as-png":
                self.send_body(b"<!doctype html><html><body>not an image</body></html>", "image/png")
            elif path == "/to-other-loopback":
                self.redirect(f"http://127.0.0.2:{state.other_port}/img.png")
            elif path == "/to-private":
                self.redirect("http://10.1.2.3/img.png")
            elif path == "/to-metadata":
                self.redirect("http://169.254.169.254/latest/meta-data/")
            elif path == "/to-ftp":
                self.redirect("ftp://127.0.0.1/img.png")
            elif path.startswith("/hold"):
                with state.lock:
                    state.in_flight += 1
                    state.max_in_flight = max(state.max_in_flight, state.in_flight)
                time.sleep(0.15)
                with state.lock:
                    state.in_flight -= 1
                self.send_body(PNG)
            else:
                self.send_body(b"unknown", "text/plain", 404)

    return Handler


def _serve(host: str, state: State, tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, 0), make_handler(state))
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, State]]:
    state = State()
    main = _serve("127.0.0.1", state)
    other = _serve("127.0.0.2", state)
    state.other_port = other.server_address[1]
    yield f"http://127.0.0.1:{main.server_address[1]}", state
    main.shutdown()
    other.shutdown()


@pytest.fixture
def server(servers) -> tuple[str, State]:
    base, state = servers
    with state.lock:
        state.hits.clear()
        state.headers.clear()
        state.max_in_flight = 0
    return base, state


def loopback(**kw) -> Fetcher:
    """A fetcher allowed to reach this test's server, with short waits so the suite stays fast."""
    kw.setdefault("allowed_networks", ("127.0.0.0/8",))
    kw.setdefault("backoff", 0.01)
    return Fetcher(FetchConfig(**kw))


def test_fetch_image_sends_user_agent(server):
    base, state = server
    with loopback() as f:
        res = f.fetch(f"{base}/img.png")
    assert (res.status, res.data, res.format, res.content_type) == (200, PNG, "png", "image/png")
    assert res.final_url == res.url == f"{base}/img.png"
    assert state.headers["/img.png"]["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("mmsearch/") and USER_AGENT.endswith("(+https://github.com/mmsearch)")


def test_content_type_header_not_trusted_either_way(server):
    base, _ = server
    with loopback() as f:
        assert f.fetch(f"{base}/wrong-ctype").format == "png"
        with pytest.raises(FetchError, match="is not an image: the bytes match no supported image signature"):
            f.fetch(f"{base}/html-as-png")


def test_hostname_is_pinned_to_checked_address_and_keeps_host_header(server):
    base, state = server
    port = base.rsplit(":", 1)[1]
    with loopback(allow_private=True) as f:
        res = f.fetch(f"http://localhost:{port}/echo")
    assert res.data == PNG
    assert state.headers["/echo"]["Host"] == f"localhost:{port}"


def test_redirect_chain_followed_and_counted(server):
    base, state = server
    with loopback() as f:
        res = f.fetch(f"{base}/chain/4")
    assert res.redirects == 5 and res.final_url == f"{base}/img.png"
    assert state.hits["/chain/0"] == 1
    with loopback(max_redirects=4) as f, pytest.raises(FetchError, match="more than 4 redirects"):
        f.fetch(f"{base}/chain/4")


def test_redirect_loop_stops_at_cap(server):
    base, state = server
    with loopback(max_redirects=5) as f, pytest.raises(FetchError, match="more than 5 redirects"):
        f.fetch(f"{base}/loop")
    assert state.hits["/loop"] == 6


def test_4xx_is_not_retried(server):
    base, state = server
    with loopback(retries=2) as f, pytest.raises(FetchError, match="HTTP 404") as err:
        f.fetch(f"{base}/404")
    assert err.value.status == 404
    assert state.hits["/404"] == 1


def test_5xx_retried_with_backoff(server):
    base, state = server
    with loopback(retries=2) as f:
        res = f.fetch(f"{base}/flaky")
    assert res.data == PNG and res.attempts == 2
    with loopback(retries=2) as f, pytest.raises(FetchError, match=r"HTTP 503 .*after 3 attempts"):
        f.fetch(f"{base}/always503")
    assert state.hits["/always503"] == 3
    with loopback(retries=0) as f, pytest.raises(FetchError, match="HTTP 503"):
        f.fetch(f"{base}/always503")
    assert state.hits["/always503"] == 4


def test_read_timeout_retried_then_fails(server):
    base, state = server
    started = time.monotonic()
    with loopback(read_timeout=0.2, retries=1) as f, pytest.raises(FetchError, match=r"timed out.*after 2 attempts"):
        f.fetch(f"{base}/slow")
    assert time.monotonic() - started < 1.5
    assert state.hits["/slow"] == 2


def test_byte_cap_from_content_length_and_from_stream(server):
    base, _ = server
    with loopback(max_bytes=100_000) as f:
        with pytest.raises(FetchError, match=r"declares .* bytes, over the limit of 100000"):
            f.fetch(f"{base}/big-declared")
        with pytest.raises(FetchError, match="sent more than the limit of 100000 bytes"):
            f.fetch(f"{base}/big-stream")
    with loopback(max_bytes=400_000) as f:
        assert len(f.fetch(f"{base}/big-declared").data) == len(PNG) + 300_000


def test_connection_refused_is_retried_and_reported():
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with loopback(retries=1) as f, pytest.raises(FetchError, match=r"connection failed.*after 2 attempts"):
        f.fetch(f"http://127.0.0.1:{port}/img.png")


def test_per_host_concurrency_limit(server):
    base, state = server
    urls = [f"{base}/hold/{i}" for i in range(6)]
    with loopback(per_host=2) as f:
        outcomes = f.fetch_many(urls, concurrency=6)
    assert [o.error for o in outcomes] == [None] * 6
    assert [o.result.data for o in outcomes] == [PNG] * 6
    assert state.max_in_flight == 2


def test_fetch_many_reports_errors_per_url(server):
    base, _ = server
    with loopback() as f:
        out = f.fetch_many([f"{base}/img.png", f"{base}/404", "http://10.0.0.1/x.png"], concurrency=3)
    assert out[0].result is not None and out[0].error is None
    assert isinstance(out[1].error, FetchError) and out[1].error.status == 404
    assert isinstance(out[2].error, UnsafeURL)


# --- SSRF guard -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:{port}/img.png", "loopback"),
        ("http://localhost:{port}/img.png", "loopback"),
        ("http://[::1]:{port}/img.png", "loopback"),
        ("http://[::ffff:127.0.0.1]:{port}/img.png", "loopback (IPv4-mapped)"),
        ("http://0.0.0.0:{port}/img.png", "unspecified"),
        ("http://10.0.0.1/img.png", "private"),
        ("http://192.168.1.1/img.png", "private"),
        ("http://172.16.0.1/img.png", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://224.0.0.1/img.png", "multicast"),
        ("http://240.0.0.1/img.png", "reserved"),
        ("http://100.64.0.1/img.png", "not globally routable"),
        ("http://[fe80::1]/img.png", "link-local"),
        ("http://[fc00::1]/img.png", "private"),
    ],
)
def test_default_config_refuses_non_public_addresses_before_connecting(server, url, problem):
    base, state = server
    port = base.rsplit(":", 1)[1]
    with Fetcher() as f, pytest.raises(UnsafeURL) as err:
        f.fetch(url.format(port=port), field="query.image_url")
    assert f"is {problem} and not allowed" in err.value.message
    assert err.value.field == "query.image_url" and err.value.code == "InvalidArgument"
    assert sum(state.hits.values()) == 0  # nothing reached our server


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("ftp://127.0.0.1/img.png", "scheme 'ftp' is not allowed"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("gopher://127.0.0.1/", "scheme 'gopher' is not allowed"),
        ("//127.0.0.1/img.png", "scheme '(none)' is not allowed"),
        ("http:///img.png", "no host"),
        ("http://user:pw@127.0.0.1/img.png", "credentials"),
        ("http://127.0.0.1:99999/img.png", "malformed URL"),
    ],
)
def test_bad_urls_refused(url, rule):
    with pytest.raises(UnsafeURL, match=re.escape(rule)):
        resolve_target(url, allow_private=True)


def test_public_address_is_fine():
    assert address_problem(ipaddress.ip_address("93.184.216.34")) is None
    assert address_problem(ipaddress.ip_address("2606:4700::1111")) is None


def test_redirect_to_refused_address_is_checked_on_every_hop(server):
    base, state = server
    # allow-listing only 127.0.0.1 lets the first hop through; 127.0.0.2 (also loopback) is refused
    with loopback(allowed_networks=("127.0.0.1/32",)) as f, pytest.raises(UnsafeURL, match=r"127\.0\.0\.2 is loopback"):
        f.fetch(f"{base}/to-other-loopback")
    assert state.hits["/to-other-loopback"] == 1 and state.hits["/img.png"] == 0
    # with the whole loopback network allowed the same redirect really is followed to 127.0.0.2
    with loopback(allowed_networks=("127.0.0.0/8",)) as f:
        res = f.fetch(f"{base}/to-other-loopback")
    assert res.final_url.startswith("http://127.0.0.2:") and res.data == PNG
    assert state.hits["/img.png"] == 1


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("/to-private", "10.1.2.3 is private"),
        ("/to-metadata", "169.254.169.254 is link-local"),
        ("/to-ftp", "scheme 'ftp' is not allowed"),
    ],
)
def test_redirects_to_private_targets_refused_before_connecting(server, path, rule):
    base, _ = server
    with loopback(allowed_networks=("127.0.0.1/32",)) as f, pytest.raises(UnsafeURL, match=rule):
        f.fetch(f"{base}{path}")


def test_allow_private_admits_loopback(server):
    base, _ = server
    with Fetcher(FetchConfig(allow_private=True)) as f:
        assert f.fetch(f"{base}/img.png").data == PNG


def test_https_pinned_address_still_verifies_certificate_for_the_host_name(tmp_path, server):
    """The connection goes to the checked IP, yet TLS SNI and certificate checks use the URL's host name."""

    if not shutil.which("openssl"):
        pytest.skip("openssl command not available to make a test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    _, state = server
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    tls = _serve("127.0.0.1", state, ctx)
    port = tls.server_address[1]
    try:
        with loopback(allowed_networks=("127.0.0.0/8", "::1/128"), verify_tls=str(cert)) as f:
            res = f.fetch(f"https://localhost:{port}/echo")
            assert res.data == PNG and state.headers["/echo"]["Host"] == f"localhost:{port}"
            hits = sum(state.hits.values())
            with pytest.raises(FetchError, match="certificate verify failed") as err:  # cert names localhost only
                f.fetch(f"https://127.0.0.1:{port}/echo")
            assert "attempts" not in err.value.message  # a certificate error is not retried
            assert sum(state.hits.values()) == hits
        with loopback(verify_tls=True, retries=0) as f, pytest.raises(FetchError, match="connection failed"):
            f.fetch(f"https://localhost:{port}/echo")  # self-signed: not trusted by default
    finally:
        tls.shutdown()
