"""Validation of /models requests (pure functions of worker/mme/requests.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor_app.worker.mme.requests import RequestError, check_name, check_url, page, parse_load


def _model(root: Path, name: str) -> Path:
    path = root / name / "model"
    path.mkdir(parents=True)
    (path / "model.json").write_text("{}")
    return path


def test_names_that_would_break_paths_are_refused():
    assert check_name("e4f1a9-model_1.tar.gz") == "e4f1a9-model_1.tar.gz"
    for bad in ("", ".", "..", "a/b", "a\\b", "tab\there", "x" * 257, 3, None):
        with pytest.raises(RequestError) as err:
            check_name(bad)
        assert err.value.status == 400


def test_urls_must_stay_inside_the_roots(tmp_path):
    roots = (tmp_path / "models",)
    good = _model(tmp_path / "models", "a")
    assert check_url(str(good), roots) == good
    assert check_url(f"file://{good}", roots) == good
    for url, status in ((f"{tmp_path}/models/a/model/../../../etc", 400), ("/etc", 400), ("a/model", 400),
                        (f"{tmp_path}/models/nope", 404)):
        with pytest.raises(RequestError) as err:
            check_url(url, roots)
        assert err.value.status == status, url
    (tmp_path / "models" / "empty").mkdir()
    with pytest.raises(RequestError, match="no model files"):
        check_url(str(tmp_path / "models" / "empty"), roots)


def test_load_body_errors_say_what_to_send(tmp_path):
    roots = (tmp_path / "models",)
    url = str(_model(tmp_path / "models", "a"))
    assert parse_load(json.dumps({"model_name": "a", "url": url}).encode(), roots).name == "a"
    for body in (b"", b"{", b"[]", b'{"model_name": "a"}', json.dumps({"url": url}).encode()):
        with pytest.raises(RequestError) as err:
            parse_load(body, roots)
        assert err.value.status == 400


def test_paging_like_mms_but_without_a_token_for_an_empty_last_page():
    names = ["a", "b", "c"]
    assert page(names, None, None) == (names, None)
    assert page(names, "2", None) == (["a", "b"], "2")
    assert page(names, "2", "2") == (["c"], None)
    assert page(names, "3", None) == (names, None)
    assert page(names, "0", None) == (names, None)  # out of range: MMS's 100
    with pytest.raises(RequestError):
        page(names, "x", None)
