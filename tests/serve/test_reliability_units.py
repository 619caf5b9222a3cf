"""Units of issue 9's serving side: error pages and the drain in nginx.conf, causes of deaths,
the OOM counter, the connection count and the open-file limit (no server started)."""

from __future__ import annotations

import os
import re
import resource
from pathlib import Path

from supervisor_app.worker.busy import BusyMark, busy_since, forget
from supervisor_app.serve.connections import open_client_connections, raise_open_file_limit
from supervisor_app.serve.nginx import DRAIN_FILE, NginxSettings, render_nginx_conf, worker_rlimit_nofile
from supervisor_app.supervision import causes


def _conf(**overrides) -> str:
    values = {"run_dir": Path("/tmp/run"), "socket_path": Path("/tmp/run/g.sock"), "port": 8080,
              "max_body_bytes": 6 << 20, "timeout_s": 60.0, "nginx_timeout_s": 62.0, "worker_connections": 16384,
              "keepalive_s": 75, "log_ping": False}
    values.update(overrides)
    return render_nginx_conf(NginxSettings(**values))


def test_error_pages_are_named_locations_except_where_nginx_has_no_uri():
    conf = _conf()
    for status in (404, 405, 413, 494, 502, 503, 504):
        assert f"error_page {status} @smc_error_{status};" in conf
        assert f"location @smc_error_{status} {{ return " in conf
    assert "error_page 400 /_smc_error/400;" in conf and "location = /_smc_error/400 { internal;" in conf
    assert "error_page 414 /_smc_error/414;" in conf
    # A 505 (HTTP/2.0 in the request line) is stopped before nginx has a URI: a named location
    # there made nginx answer its own HTML 500 ("empty URI in redirect to named location").
    assert "error_page 505 /_smc_error/505;" in conf and "location = /_smc_error/505 { internal;" in conf
    assert "error_page 494 @smc_error_494;" in conf and "location @smc_error_494 { return 400 " in conf
    bodies = re.findall(r"return \d+ '(\{.*?\})';", conf)
    assert bodies and all('"status":' in body for body in bodies)


def test_drain_block_checks_the_drain_file_and_turns_keepalive_off():
    conf = _conf()
    assert f"if (-f /tmp/run/{DRAIN_FILE})" in conf
    drain = conf[conf.index("location @smc_draining"):]
    assert "keepalive_timeout 0;" in drain.split("}")[0] and "rewrite ^ $uri last;" in drain.split("}")[0]


def test_connection_limits():
    conf = _conf(worker_connections=16384)
    assert "worker_connections 16384;" in conf and f"worker_rlimit_nofile {worker_rlimit_nofile(16384)};" in conf
    assert "worker_rlimit_nofile 5000;" in _conf(rlimit_nofile=5000)
    soft, hard = raise_open_file_limit(256)  # never lowers
    assert soft == resource.getrlimit(resource.RLIMIT_NOFILE)[0] and soft >= 256


def test_open_client_connections_counts_established_on_the_port(tmp_path):
    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st\n"
        "   0: 00000000:1F90 00000000:0000 0A\n"  # listening on 8080: not a client
        "   1: 0100007F:1F90 0100007F:9C40 01\n"  # established on 8080
        "   2: 0100007F:1F90 0100007F:9C41 08\n"  # close-wait on 8080
        "   3: 0100007F:1F91 0100007F:9C42 01\n"  # another port
    )
    assert open_client_connections(8080, (table,)) == 2
    assert open_client_connections(8080, (tmp_path / "missing",)) is None


def test_oom_counter_reads_v2_and_v1_files(tmp_path):
    v2 = tmp_path / "memory.events"
    v2.write_text("low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n")
    counter = causes.OomCounter([v2])
    assert counter.new_kills() == 0
    v2.write_text("low 0\nhigh 0\nmax 3\noom 3\noom_kill 2\n")
    assert counter.new_kills() == 1
    v1 = tmp_path / "memory.oom_control"
    v1.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n")
    assert causes.read_oom_kills([tmp_path / "missing", v1]) == 7
    assert causes.OomCounter([tmp_path / "missing"]).new_kills() is None


def test_causes_name_who_killed():
    assert causes.describe(137, killed_by_smc="grace expired") == "killed by smc (grace expired)"
    assert causes.describe(1, timed_out_s=65).startswith("killed by gunicorn: no answer within 65 s")
    assert "OOM killer" in causes.describe(137, oom_kills=1)
    assert causes.describe(137, oom_kills=0) == "killed by SIGKILL (not by smc; OOM counter unchanged)"
    assert "not readable" in causes.describe(137, oom_kills=None)
    assert causes.describe(139) == "killed by SIGSEGV"
    assert causes.describe(3).startswith("exit code 3")


def test_busy_marks(tmp_path):
    mark = BusyMark(tmp_path)
    assert busy_since(tmp_path) == {}
    mark.begin()
    (since,) = busy_since(tmp_path).values()
    assert since > 0
    mark.end()
    assert busy_since(tmp_path) == {}
    (tmp_path / "busy-999999999").write_bytes(b"\x00" * 7 + b"\x40")  # a dead worker's stale file
    mark.begin()
    assert list(busy_since(tmp_path)) == [os.getpid()]
    forget(tmp_path, os.getpid())
    assert busy_since(tmp_path) == {}
