"""The pure parts of LoRA adapter support: request parsing (shared by both modes) and the
chunked-body end finder of the engine hop."""

from __future__ import annotations

import pytest

from supervisor_app.serve.engine.upstream import ChunkedEnd, _framing
from supervisor_app.worker.adapter_requests import AdapterError, check_name, name_in_path, parse_registration


@pytest.mark.parametrize("name", ["a", "a1", "my-adapter_2.v3", "A" * 128])
def test_plain_names_are_taken(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "../x", "a/b", "..", "a..b", ".a", "-a", "a b", "a:b", "a\\b", "A" * 129, None, 3])
def test_other_names_are_400(name):
    with pytest.raises(AdapterError) as caught:
        check_name(name)
    assert caught.value.status == 400


def test_registration_from_json_or_query():
    assert parse_registration(b'{"name": "a", "src": "/x", "preload": true}', "").src == "/x"
    assert parse_registration(b"", "name=a&src=%2Fx").name == "a"
    assert parse_registration(b"not json", "name=a&src=/x").src == "/x"  # as MHCS: the query instead
    for body, query, word in ((b'{"src": "/x"}', "", "`name`"), (b'{"name": "a"}', "", "`src`"),
                              (b"[1]", "", "not an object"), (b"garbage", "", "not JSON")):
        with pytest.raises(AdapterError) as caught:
            parse_registration(body, query)
        assert caught.value.status == 400 and word in caught.value.message


def test_names_in_paths():
    assert name_in_path("/adapters") is None and name_in_path("/adapters/") is None
    assert name_in_path("/adapters/a1") == "a1"
    with pytest.raises(AdapterError):
        name_in_path("/adapters/a/../b")


def test_chunked_end_is_found_however_the_bytes_arrive():
    body = b"5\r\nhello\r\n3;ext=1\r\nabc\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\nTrailer: 1\r\n\r\n"
    tracker = ChunkedEnd()
    ends = [tracker.feed(body[i:i + 1]) for i in range(len(body))]
    assert ends[-1] == 1 and set(ends[:-1]) == {-1}
    for split in range(len(body)):
        tracker = ChunkedEnd()
        assert tracker.feed(body[:split]) == -1
        assert tracker.feed(body[split:]) == len(body) - split


def test_framing_of_an_answer_head():
    assert _framing(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n") == (200, 5, False, False)
    assert _framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n") == (200, None, True, True)
    assert _framing(b"HTTP/1.0 200 OK\r\n\r\n")[3] is True
