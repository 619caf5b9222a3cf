"""SMC_WSGI_APP apps stream: iterables sent as produced, write() works, hop-by-hop headers dropped."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import ROOT
from tests.serve.streamclient import stream

# Under smc's embedded Python and under a real CPython as the image's (tests/conftest.py).
pytestmark = pytest.mark.both_pythons

APPS = ROOT / "tests" / "fixtures" / "apps"


def _install(opt_ml, name: str) -> None:
    code = opt_ml / "model" / "code"
    code.mkdir(parents=True, exist_ok=True)
    shutil.copy(APPS / f"{name}.py", code / f"{name}.py")


def _gaps(result):
    arrivals = [at for at, _ in result.chunks]
    return [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]


def test_wsgi_generator_streams_and_hop_by_hop_headers_are_dropped(start_server, opt_ml):
    _install(opt_ml, "wsgi_stream")
    server = start_server(None, env={"SMC_WSGI_APP": "wsgi_stream:app"})
    result = stream(server.port, {"mode": "gen"})
    assert result.status == 200 and result.complete
    assert result.headers["transfer-encoding"] == "chunked"
    assert "keep-alive" not in result.headers
    assert result.body.count(b"\n") == 3 and len(result.chunks) == 3
    assert all(gap > 0.2 for gap in _gaps(result)), _gaps(result)


def test_wsgi_write_callable_and_sized_iterables(start_server, opt_ml):
    _install(opt_ml, "wsgi_stream")
    server = start_server(None, env={"SMC_WSGI_APP": "wsgi_stream:app"})
    written = stream(server.port, {"mode": "write"})
    assert written.complete and written.body == b"written-1\nwritten-2\ntail\n"
    # the first write() went out at once (the second write and the tail may share a network chunk)
    assert written.chunks[0][1] == b"written-1\n" and _gaps(written)[0] > 0.2
    sized = stream(server.port, {"mode": "sized"})
    assert sized.complete and sized.body == b"abcdefghijkl" and sized.headers["content-length"] == "12"


def test_wsgi_app_failing_mid_stream_breaks_the_stream(start_server, opt_ml):
    _install(opt_ml, "wsgi_stream")
    server = start_server(None, env={"SMC_WSGI_APP": "wsgi_stream:app", "SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    result = stream(server.port, {"mode": "raise"})
    assert result.status == 200 and result.body == b"one\n" and not result.complete
    assert "wsgi app failed mid-stream" in server.wait_event("stream_failed")["error"]
    assert stream(server.port, {"mode": "gen"}).complete


def test_flask_streaming_response(start_server, opt_ml):
    _install(opt_ml, "wsgi_stream")
    server = start_server(None, env={"SMC_WSGI_APP": "wsgi_stream:flask_app"})
    result = stream(server.port, {"n": 3})
    assert result.status == 200 and result.complete
    assert result.headers["content-type"].startswith("text/event-stream")
    assert result.body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n" and len(result.chunks) == 3
    assert all(gap > 0.2 for gap in _gaps(result)), _gaps(result)
