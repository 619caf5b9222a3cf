"""A client that stops reading a big answer costs its own answer only (issue 24, item 10): the
worker's blocked send used to hold it until gunicorn killed it as hung, a crash counted toward
SMC_WORKER_CRASH_LIMIT, so a few stalled readers ended the server."""

from __future__ import annotations

import json
import shutil
import socket
import time

from tests.conftest import ROOT

APPS = ROOT / "tests" / "fixtures" / "apps"


def _stalled_reader(port: int, mib: int) -> socket.socket:
    """Asks for a `mib` MiB stream, reads its first bytes, then never reads again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: no window autotuning
    sock.connect(("127.0.0.1", port))
    body = json.dumps({"mode": "big", "mib": mib}).encode()
    sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%b" % (len(body), body))
    sock.settimeout(10)
    assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    return sock


def test_stalled_readers_cost_their_own_streams_not_the_server(start_server, opt_ml):
    code = opt_ml / "model" / "code"
    code.mkdir(parents=True, exist_ok=True)
    shutil.copy(APPS / "wsgi_stream.py", code / "wsgi_stream.py")
    # gunicorn's own timeout is 3 + 5 s: a worker blocked in send for that long was killed as hung.
    server = start_server(None, env={"SMC_WSGI_APP": "wsgi_stream:app", "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
                                     "SAGEMAKER_MODEL_SERVER_TIMEOUT": "3", "SMC_WORKER_CRASH_LIMIT": "2"})
    readers = [_stalled_reader(server.port, 200) for _ in range(2)]
    readers.append(_stalled_reader(server.port, 200))  # served once a worker has given up on one
    try:
        time.sleep(16)
        assert server.proc.poll() is None, server.output()
        answer = server.invoke({"mode": "sized"}, timeout=10)
        assert answer.status == 200 and answer.body == b"abcdefghijkl"
    finally:
        for reader in readers:
            reader.close()
    stalled = server.events("client_stalled")
    assert len(stalled) == 3, server.output()
    assert all(event["status"] == "200" and event["stalled_s"] >= 3 for event in stalled), stalled
    assert not server.events("worker_killed") and not server.events("worker_timeout"), server.output()
    assert server.ping() == 200
