"""Engine mode with an engine whose answers are not valid HTTP (tests/engine/broken_engine.py, a
raw-socket stand-in for a broken engine): what the client gets and what the log says for each, as
docs/engines.md ("An engine answer that is not HTTP") states. The frozen binary and real nginx."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.engine.conftest import python3

BROKEN_ENGINE = Path(__file__).resolve().parent / "broken_engine.py"


@pytest.fixture
def broken(start_engine):
    port = free_port()
    return start_engine(command=f"{python3()} {BROKEN_ENGINE} --port {port}",
                        env={"SMC_ENGINE_URL": f"http://127.0.0.1:{port}",
                             "SMC_ENGINE_INVOCATIONS_PATH": "/not-http"})


def raw_post(port: int, path: str, idle_s: float = 2.0) -> tuple[bytes, bool]:
    """(every byte the server sends for one POST, whether it then closed the connection); reading
    stops after idle_s without a byte, which is how an answer without framing looks."""
    with socket.create_connection(("127.0.0.1", port), timeout=idle_s) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     "Content-Length: 2\r\n\r\n{}".encode())
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            return data, False
        return data, True


def fault(server, event: str, path: str) -> tuple[dict, dict]:
    """The engine_* event for the request on path, and the access line of the same connection."""
    record = server.wait_event(event, request=f"POST {path} HTTP/1.1", timeout=5)
    access = server.wait_event("request", connection=record["connection"], timeout=5)  # flushed within 1 s
    assert access["path"] == path, (record, access)
    server.lines()  # every line, the access lines included, is a JSON object
    return record, access


def test_an_answer_without_a_status_line_reaches_the_client_as_sent_and_is_logged(broken):
    # nginx passes an upstream answer with no status line on as HTTP/0.9 and offers no setting
    # to refuse it (ngx_http_proxy_module: the rejection is compiled out); smc cannot turn it into
    # a 502, so the client gets the engine's bytes on a connection nginx keeps open, and the log
    # says what happened.
    data, closed = raw_post(broken.port, "/invocations")
    assert not data.startswith(b"HTTP/"), data[:200]
    assert b"this engine speaks no HTTP" in data
    assert not closed  # nginx keeps the connection as if an answer had ended (docs/engines.md)
    with pytest.raises(http.client.BadStatusLine):  # what an HTTP client makes of it: an error
        broken.invoke({})
    record, access = fault(broken, "engine_answer_not_http", "/invocations")
    assert record["level"] == "error" and record["component"] == "nginx"
    assert "not HTTP" in record["reason"] and "HTTP/0.9" in record["reason"]
    assert record["upstream_url"].endswith("/not-http")
    assert access["status"] == 9  # nginx's code for an HTTP/0.9 answer; was `009`, not JSON
    assert broken.ping() == 200  # one bad answer does not make the engine unhealthy


def test_a_bad_header_line_is_a_json_502_that_names_the_cause(broken):
    answer = broken.request("POST", "/bad-header", "{}", {"Content-Type": "application/json"})
    assert answer.status == 502
    body = answer.json()
    assert body["status"] == 502 and "not a valid HTTP answer" in body["message"], body
    record, access = fault(broken, "engine_answer_invalid_header", "/bad-header")
    assert "JSON 502" in record["reason"] and access["status"] == 502


def test_a_broken_chunk_in_the_first_read_cuts_the_answer(broken):
    # The head and the broken chunk arrive together: nginx has queued the head but not sent it when
    # it finds the chunk broken, and closes the connection. The client gets nothing (or, with a
    # head larger than nginx's first send, a head and no chunked end), never a complete answer.
    data, closed = raw_post(broken.port, "/bad-chunk")
    assert closed
    assert data == b"" or (data.startswith(b"HTTP/1.1 200") and not data.endswith(b"0\r\n\r\n")), data
    record, access = fault(broken, "engine_chunked_body_invalid", "/bad-chunk")
    assert "not valid chunked encoding" in record["reason"] and "cut answer" in record["reason"]
    assert access["status"] == 200 and access["bytes"] == len(data.partition(b"\r\n\r\n")[2])


def test_a_broken_chunk_after_the_head_went_out_cuts_the_stream(broken):
    data, closed = raw_post(broken.port, "/bad-chunk-later")
    assert closed
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower()
    assert b"data: one" in body and not body.endswith(b"0\r\n\r\n")  # no chunked end: a cut stream
    conn = http.client.HTTPConnection("127.0.0.1", broken.port, timeout=10)
    conn.request("POST", "/bad-chunk-later", body="{}")
    with pytest.raises(http.client.IncompleteRead):  # what an HTTP client makes of it
        conn.getresponse().read()
    conn.close()
    record, access = fault(broken, "engine_chunked_body_invalid", "/bad-chunk-later")
    assert "the head and the body up to the broken chunk" in record["reason"]
    assert access["status"] == 200

