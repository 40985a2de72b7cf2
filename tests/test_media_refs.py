"""load_local's root confinement and load_image_ref's dispatch over data URIs, URLs and paths."""

from __future__ import annotations

import base64
import functools
import io
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from mmsearch.errors import InvalidArgument, NotFound
from mmsearch.media import FetchConfig, Fetcher, UnsafeURL, load_image_ref, load_local


def jpeg_bytes(size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (0, 0, 255)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def roots(tmp_path):
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    (allowed / "sub" / "a.jpg").write_bytes(jpeg_bytes())
    (outside / "secret.jpg").write_bytes(jpeg_bytes())
    return allowed, outside


def test_load_local_inside_root(roots):
    allowed, _ = roots
    assert load_local(allowed / "sub" / "a.jpg", [allowed]) == jpeg_bytes()
    assert load_local(str(allowed / "sub" / ".." / "sub" / "a.jpg"), [str(allowed)]) == jpeg_bytes()


def test_load_local_refuses_outside_root_dotdot_and_symlinks(roots):
    allowed, outside = roots
    with pytest.raises(UnsafeURL, match="outside the allowed roots"):
        load_local(outside / "secret.jpg", [allowed])
    with pytest.raises(UnsafeURL, match="outside the allowed roots"):
        load_local(allowed / ".." / "outside" / "secret.jpg", [allowed])
    os.symlink(outside / "secret.jpg", allowed / "link.jpg")
    with pytest.raises(UnsafeURL, match="outside the allowed roots"):
        load_local(allowed / "link.jpg", [allowed])
    os.symlink(outside, allowed / "dirlink")
    with pytest.raises(UnsafeURL, match="outside the allowed roots"):
        load_local(allowed / "dirlink" / "secret.jpg", [allowed])
    # a sibling whose name merely starts with the root's name is not under it
    (allowed.parent / "allowed2").mkdir()
    (allowed.parent / "allowed2" / "x.jpg").write_bytes(jpeg_bytes())
    with pytest.raises(UnsafeURL, match="outside the allowed roots"):
        load_local(allowed.parent / "allowed2" / "x.jpg", [allowed])


def test_load_local_other_refusals(roots):
    allowed, _ = roots
    with pytest.raises(UnsafeURL, match="no allowed roots configured"):
        load_local(allowed / "sub" / "a.jpg", [])
    with pytest.raises(NotFound, match="does not exist"):
        load_local(allowed / "missing.jpg", [allowed])
    with pytest.raises(InvalidArgument, match="not a regular file"):
        load_local(allowed / "sub", [allowed])
    with pytest.raises(InvalidArgument, match="over the limit of 100 bytes"):
        load_local(allowed / "sub" / "a.jpg", [allowed], max_bytes=100)


def test_ref_data_uri_path_and_file_url(roots):
    allowed, outside = roots
    uri = "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes()).decode()
    assert load_image_ref(uri, None).format == "jpeg"
    with pytest.raises(InvalidArgument, match=r"MIME type image/png does not match the image \(jpeg\)"):
        load_image_ref(uri.replace("image/jpeg", "image/png"), None, field="query.image_url")
    path = allowed / "sub" / "a.jpg"
    assert load_image_ref(str(path), None, [allowed]).width == 40
    assert load_image_ref(path.as_uri(), None, [allowed]).height == 30
    with pytest.raises(UnsafeURL):
        load_image_ref(str(outside / "secret.jpg"), None, [allowed])
    with pytest.raises(UnsafeURL, match="scheme 'ftp' is not supported"):
        load_image_ref("ftp://example.com/a.jpg", None, [allowed])
    with pytest.raises(UnsafeURL, match="no fetcher configured"):
        load_image_ref("http://127.0.0.1/a.jpg", None)
    with pytest.raises(InvalidArgument, match="non-empty string"):
        load_image_ref("  ", None)


def test_ref_http_url_through_fetcher(roots):
    allowed, _ = roots

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(allowed))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/sub/a.jpg"
    try:
        with Fetcher(FetchConfig(allowed_networks=("127.0.0.1/32",))) as f:
            img = load_image_ref(url, f, field="query.image_url")
        assert (img.format, img.width, img.height) == ("jpeg", 40, 30)
        with Fetcher() as f, pytest.raises(UnsafeURL, match="loopback"):
            load_image_ref(url, f)
    finally:
        server.shutdown()
        server.server_close()
