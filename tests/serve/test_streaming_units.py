"""Fast tests of the streaming pieces against the source: stream detection, the response writer's
framing (buffered, chunked, sized, write()), hop-by-hop headers, and the linear body read."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from supervisor_app.worker import sync_worker as worker
from supervisor_app.worker import handlers
from supervisor_app.worker.response import ResponseWriter


def _writer():
    ours, theirs = socket.socketpair()
    return ResponseWriter(ours, head_only=False, heartbeat=lambda: None), ours, theirs


def _read_all(theirs) -> bytes:
    data = b""
    while chunk := theirs.recv(65536):
        data += chunk
    theirs.close()
    return data


def _received(ours, theirs) -> bytes:
    ours.close()
    data = b""
    while chunk := theirs.recv(65536):
        data += chunk
    theirs.close()
    return data


@pytest.mark.parametrize("value", [b"x", "x", bytearray(b"x"), memoryview(b"x"), {"a": 1}, [1], (1, 2), 3, None])
def test_plain_values_are_not_streams(value):
    assert not handlers.is_stream(value)


def test_generators_iterators_and_custom_iterables_are_streams():
    class Tokens:
        def __iter__(self):
            return iter(["a"])

    assert handlers.is_stream(x for x in "ab")
    assert handlers.is_stream(iter([b"a"]))
    assert handlers.is_stream(map(str, [1]))
    assert handlers.is_stream(Tokens())


def test_chunks_as_bytes_skips_empty_and_rejects_other_types():
    assert list(handlers.chunks_as_bytes(iter(["a", b"", "", b"b", bytearray(b"c")]), "transform_fn")) == [b"a", b"b", b"c"]
    with pytest.raises(TypeError, match="yielded int; yield bytes or str"):
        list(handlers.chunks_as_bytes(iter([1]), "transform_fn"))


def test_streamed_body_is_chunked_and_drops_hop_by_hop_headers():
    writer, ours, theirs = _writer()
    writer.start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "keep-alive"),
                                     ("Transfer-Encoding", "identity"), ("Keep-Alive", "5")])
    writer.stream(iter([b"ab", b"", b"cde"]))
    data = _received(ours, theirs)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Transfer-Encoding: chunked" in head and b"X-Accel-Buffering: no" in head
    assert b"keep-alive" not in head.lower().replace(b"connection: close", b"") and b"identity" not in head
    assert body == b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"


def test_sized_iterable_is_sent_as_is_and_write_callable_goes_first():
    writer, ours, theirs = _writer()
    write = writer.start_response("200 OK", [("Content-Length", "6")])
    write(b"abc")
    writer.stream(iter([b"def"]))
    head, _, body = _received(ours, theirs).partition(b"\r\n\r\n")
    assert b"Content-Length: 6" in head and b"chunked" not in head and body == b"abcdef"


def test_large_pieces_are_framed_without_joining():
    writer, ours, theirs = _writer()
    writer.start_response("200 OK", [])
    piece = b"z" * 200_000
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(_read_all(theirs)))
    reader.start()
    writer.stream(iter([piece]))
    ours.close()
    reader.join(5)
    body = received[0].partition(b"\r\n\r\n")[2]
    assert body == b"30d40\r\n" + piece + b"\r\n0\r\n\r\n"


def test_no_pieces_is_an_empty_buffered_answer():
    writer, ours, theirs = _writer()
    writer.start_response("204 No Content", [])
    writer.stream(iter([b""]))
    head, _, body = _received(ours, theirs).partition(b"\r\n\r\n")
    assert b"Content-Length: 0" in head and body == b""


def test_body_read_is_one_buffer_shared_with_the_handler():
    ours, theirs = socket.socketpair()
    size = 3 * 1024 * 1024 + 7
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    sender = threading.Thread(target=lambda: ours.sendall(
        b"POST /invocations HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % size + payload))
    sender.start()
    request_line, headers, body = worker.read_request(theirs)
    sender.join()
    environ = worker.build_environ(request_line, headers, body)
    data = environ["wsgi.input"].read(size)
    assert data == payload and environ["CONTENT_LENGTH"] == str(size)
    assert data is body.getvalue()  # no copy between the socket's buffer and the handler's bytes
    ours.close()
    theirs.close()


def test_a_body_that_stalls_still_gets_heartbeats(monkeypatch):
    from supervisor_app.worker import bodies

    monkeypatch.setattr(bodies, "_HEARTBEAT_S", 0.05)
    ours, theirs = socket.socketpair()
    payload = bytes(range(256)) * 20

    def send() -> None:
        ours.sendall(b"POST /x HTTP/1.1\r\nContent-Length: 5120\r\n\r\n")
        time.sleep(0.1)  # the head arrives alone: the whole body comes through read_body
        ours.sendall(payload[:100])
        time.sleep(0.3)  # a stall of 6 heartbeat periods
        ours.sendall(payload[100:])

    sender = threading.Thread(target=send)
    beats = []
    sender.start()
    _, _, body = worker.read_request(theirs, lambda: beats.append(1))
    sender.join()
    assert body.getvalue() == payload
    assert 5 <= len(beats) <= 9, beats
    assert theirs.gettimeout() is None  # the socket is left as it was
    ours.close()
    theirs.close()


def test_nginx_streams_big_bodies_to_the_app_and_buffers_small_ones(tmp_path):
    from supervisor_app.serve.nginx import NginxSettings, render_nginx_conf

    def conf(**kw):
        return render_nginx_conf(NginxSettings(run_dir=tmp_path, socket_path=tmp_path / "s", port=8080,
                                               max_body_bytes=0, timeout_s=60, nginx_timeout_s=62,
                                               worker_connections=16, keepalive_s=5, log_ping=False, **kw))

    for rendered in (conf(), conf(asgi=True)):
        assert "rewrite ^ /_smc_streamed_body$uri last;" in rendered
        streamed = rendered.split("location /_smc_streamed_body/ {", 1)[1].split("}", 1)[0]
        assert "internal;" in streamed and "proxy_request_buffering off;" in streamed
        assert '"~^[0-9]{8,}$" 1;' in rendered  # 10 MB and more, by Content-Length digits
    other = conf()
    assert "client_body_in_file_only" not in other and "_smc_body_file" not in other
    assert "proxy_http_version 1.1;" in other
    asgi = conf(asgi=True)
    assert "proxy_buffering off;" in asgi and "location = /invocations-bidirectional-stream" in asgi
