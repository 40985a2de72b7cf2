"""Data URI parsing follows the AI Search spec to the letter: each deviation is its own error."""

from __future__ import annotations

import base64

import pytest

from mmsearch.errors import InvalidArgument
from mmsearch.media import is_data_uri, parse_data_uri

PAYLOAD = bytes(range(256)) * 3
B64 = base64.b64encode(PAYLOAD).decode()


def test_valid_uri_round_trips():
    mime, data = parse_data_uri(f"data:image/png;base64,{B64}")
    assert mime == "image/png"
    assert data == PAYLOAD


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_each_padding_length_accepted(n):
    raw = b"x" * n
    assert parse_data_uri("data:image/jpeg;base64," + base64.b64encode(raw).decode()) == ("image/jpeg", raw)


@pytest.mark.parametrize(
    ("uri", "rule"),
    [
        (f"DATA:image/png;base64,{B64}", "prefix 'data:'"),
        (f"image/png;base64,{B64}", "prefix 'data:'"),
        (f" data:image/png;base64,{B64}", "prefix 'data:'"),
        (f"data:image/png,{B64}", "';base64,' is missing"),
        (f"data:image/png;BASE64,{B64}", "';base64,' is missing"),
        (f"data:image/png;base64;{B64}", "';base64,' is missing"),
        (f"data:image/png; base64,{B64}", "';base64,' is missing"),
        (f"data:image /png;base64,{B64}", "invalid MIME type"),
        (f"data:;base64,{B64}", "empty MIME type"),
        (f"data:image/png;charset=utf-8;base64,{B64}", "invalid MIME type"),
        (f"data:png;base64,{B64}", "invalid MIME type"),
        ("data:image/png;base64,", "empty base64 payload"),
        (f"data:image/png;base64,{B64[:40]}\n{B64[40:]}", "whitespace"),
        (f"data:image/png;base64,{B64[:40]} {B64[40:]}", "whitespace"),
        (f"data:image/png;base64,{B64}\r\n", "whitespace"),
        ("data:image/png;base64,ab-_", "outside the standard base64 alphabet: '-'"),
        ("data:image/png;base64,YWJj%3D", "outside the standard base64 alphabet: '%'"),
        ("data:image/png;base64,YQ==YWJj", "'=' padding before its end"),
        ("data:image/png;base64,YQ", "not a multiple of 4"),
        ("data:image/png;base64,YWJjZA=", "not a multiple of 4"),
        ("data:image/png;base64,YR==", "non-canonical padding bits"),
    ],
)
def test_each_violation_has_its_own_error(uri, rule):
    with pytest.raises(InvalidArgument) as err:
        parse_data_uri(uri)
    assert rule in err.value.message
    assert err.value.field == "query.image_url"
    assert err.value.message.startswith("query.image_url")


def test_field_name_comes_from_caller():
    with pytest.raises(InvalidArgument) as err:
        parse_data_uri("data:image/png;base64,YQ", field="items[3].image")
    assert err.value.field == "items[3].image"
    assert "items[3].image" in err.value.message


def test_is_data_uri():
    assert is_data_uri("data:image/png;base64,AAAA")
    assert not is_data_uri("https://example.com/a.png")
