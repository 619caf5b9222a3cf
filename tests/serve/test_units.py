"""Fast tests of serve's pure parts, against the source: negotiation, codecs, config, nginx.conf,
handler loading, line relay."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor_app.config.core import load_config
from supervisor_app.config.serve import SERVE_SETTINGS, load_serve_config
from supervisor_app.errors import AppLoadError, ConfigError
from supervisor_app.worker import content, handlers
from supervisor_app.serve.nginx import NginxSettings, render_nginx_conf
from supervisor_app.supervision.children import LineRelay
from tests.conftest import ROOT
from tests.serve.conftest import HANDLERS


def serve_config(**env: str):
    return load_serve_config(load_config(env))


def test_accept_ranks_by_q_then_order():
    assert content.parse_accept("text/csv;q=0.5, application/json, */*;q=0.1") == [
        ("application/json", 1.0), ("text/csv", 0.5), ("*/*", 0.1)]


def test_choose_honours_wildcards_and_default():
    available = ("application/json", "text/csv")
    assert content.choose(None, available, "application/json") == "application/json"
    assert content.choose("*/*", available, "text/csv") == "text/csv"
    assert content.choose("text/*", available, "application/json") == "text/csv"
    with pytest.raises(content.ContentError) as err:
        content.choose("image/png, application/xml;q=0.3", available, "application/json")
    assert err.value.status == 406


def test_preferred_type_for_user_output_fn():
    assert content.preferred_type("text/csv;q=0.2, application/json", "text/csv") == "application/json"
    assert content.preferred_type("*/*", "text/csv") == "text/csv"
    assert content.preferred_type("", "application/json") == "application/json"


def test_decode_without_numpy_gives_python_values():
    assert content.decode(b'{"a": [1]}', "application/json; charset=utf-8", False) == {"a": [1]}
    assert content.decode(b"1,2\nx,3\n", "text/csv", False) == [[1.0, 2.0], ["x", 3.0]]
    assert content.decode("é".encode("latin-1"), "text/plain; charset=latin-1", False) == "é"
    with pytest.raises(content.ContentError) as err:
        content.decode(b"\x93NUMPY", "application/x-npy", False)
    assert err.value.status == 415 and "pip install numpy" in err.value.message
    with pytest.raises(content.ContentError) as err:
        content.decode(b"\xff", "application/json", False)
    assert err.value.status == 400


def test_encode_csv_one_value_per_line_and_rows():
    assert content.encode([1.5, 2], content.CSV) == b"1.5\n2\n"
    assert content.encode([[1, "a,b"]], content.CSV) == b'1,"a,b"\n'
    with pytest.raises(TypeError):
        content.encode({1, 2}, content.JSON)


def test_batch_strategy_accepts_both_spellings():
    assert serve_config(SAGEMAKER_BATCH_STRATEGY="MultiRecord").batch_strategy == "MULTI_RECORD"
    assert serve_config(SAGEMAKER_BATCH_STRATEGY="single_record").batch_strategy == "SINGLE_RECORD"
    with pytest.raises(ConfigError, match="SAGEMAKER_BATCH_STRATEGY='lines' is not a batch strategy"):
        serve_config(SAGEMAKER_BATCH_STRATEGY="lines")


def test_port_range_and_payload_are_validated():
    assert serve_config(SAGEMAKER_SAFE_PORT_RANGE="9000-9010").safe_port_range == (9000, 9010)
    with pytest.raises(ConfigError, match="SAGEMAKER_SAFE_PORT_RANGE='9010-9000' is not a port range"):
        serve_config(SAGEMAKER_SAFE_PORT_RANGE="9010-9000")
    with pytest.raises(ConfigError, match="outside 0..100"):
        serve_config(SAGEMAKER_MAX_PAYLOAD_IN_MB="101")
    assert serve_config(SAGEMAKER_MAX_PAYLOAD_IN_MB="100").max_payload_bytes == 100 * 1024 * 1024


def test_one_timeout_drives_every_layer():
    config = serve_config(SAGEMAKER_MODEL_SERVER_TIMEOUT="30")
    assert config.timeout_s < config.nginx_timeout_s < config.gunicorn_timeout_s
    conf = render_nginx_conf(_nginx_settings(config))
    assert "proxy_read_timeout 32s;" in conf
    assert "client_max_body_size 6291456;" in conf


def test_every_serve_setting_is_documented():
    for setting in SERVE_SETTINGS:
        assert setting.doc and setting.group == "serve", setting.field


def _nginx_settings(config, **overrides) -> NginxSettings:
    values = {"run_dir": Path("/tmp/run"), "socket_path": Path("/tmp/run/gunicorn.sock"), "port": config.port,
              "max_body_bytes": config.max_payload_bytes, "timeout_s": config.timeout_s,
              "nginx_timeout_s": config.nginx_timeout_s, "worker_connections": 64, "keepalive_s": 5, "log_ping": False}
    values.update(overrides)
    return NginxSettings(**values)


def test_nginx_conf_writes_only_inside_run_dir_and_passes_nginx_t(tmp_path):
    config = serve_config(SAGEMAKER_BIND_TO_PORT="18123")
    (tmp_path / "nginx").mkdir()
    conf = render_nginx_conf(_nginx_settings(config, run_dir=tmp_path, socket_path=tmp_path / "g.sock"))
    paths = [word.rstrip(";") for word in conf.split() if word.startswith("/") and not word.startswith("/_smc")]
    outside = [p for p in paths if not p.startswith(str(tmp_path)) and p not in ("/", "/dev/stdout", "/ping")
               and not p.startswith("/ping\"")]
    assert not outside
    (tmp_path / "nginx.conf").write_text(conf)
    result = subprocess.run(["nginx", "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_nginx_conf_logs_ping_only_when_asked():
    config = serve_config()
    assert "access_log off;" in render_nginx_conf(_nginx_settings(config))
    assert "access_log off;" not in render_nginx_conf(_nginx_settings(config, log_ping=True))


def _load(tmp_path: Path, name: str) -> handlers.Handlers:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    module = f"h_{name}"
    (code / f"{module}.py").write_text((HANDLERS / f"{name}.py").read_text())
    return handlers.load_handlers(code, module)


def test_missing_module_and_raising_module_are_told_apart(tmp_path):
    with pytest.raises(AppLoadError, match="not found") as missing:
        handlers.load_handlers(tmp_path, "inference")
    assert "SAGEMAKER_PROGRAM" in missing.value.hint
    with pytest.raises(AppLoadError, match="raised JSONDecodeError on import") as raising:
        _load(tmp_path, "import_error")
    assert ":4" in raising.value.hint


def test_context_argument_detected_by_arity(tmp_path):
    loaded = _load(tmp_path, "transform")
    assert loaded.with_context == {"model_fn": False, "transform_fn": True}


def test_status_code_attribute_and_value_error_rules(tmp_path):
    loaded = _load(tmp_path, "transform")
    service = handlers.InferenceService(loaded, {"scale": 3}, tmp_path, "application/json")
    ctx = handlers.Context(tmp_path)
    assert service.invoke(b"[1]", "application/json", None, ctx).body == json.dumps(
        {"scaled": [3], "accept": "application/json", "content_type": "application/json"}).encode()
    with pytest.raises(handlers.HandlerError) as err:
        service.invoke(b"[1]", "text/csv", None, ctx)
    assert err.value.status == 400


def test_relay_passes_json_through_and_wraps_text():
    out = io.BytesIO()
    relay = LineRelay("nginx", "stderr", out, lambda: "T")
    relay.feed(b'{"a":1}\n2026/11/26 00:00:00 [emerg] 12#12: bind() failed\npart')
    relay.close()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0] == {"a": 1}
    assert lines[1]["level"] == "critical" and lines[1]["message"] == "bind() failed" and lines[1]["pid"] == 12
    assert lines[2]["message"] == "part" and lines[2]["component"] == "nginx"


def test_serve_supervisor_does_not_import_gunicorn_or_flask():
    code = ("import sys; import supervisor_app.serve.command\n"
            "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert not {"gunicorn", "flask"} & set(result.stdout.split())


def test_worker_request_path_parses_what_nginx_sends():
    import socket

    from supervisor_app.worker.sync_worker import build_environ, read_request

    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"POST /invocations?a=1 HTTP/1.0\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 6\r\n"
                     b"X-Amzn-SageMaker-Custom-Attributes: a=1\r\nAccept: text/csv\r\nAccept: */*\r\nX_Bad: y\r\n\r\n1,2")
        left.sendall(b",3\n")
        environ = build_environ(*read_request(right))
    assert environ["PATH_INFO"] == "/invocations" and environ["QUERY_STRING"] == "a=1"
    assert environ["CONTENT_TYPE"] == "text/csv" and environ["wsgi.input"].read() == b"1,2,3\n"
    assert environ["HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES"] == "a=1"
    assert environ["HTTP_ACCEPT"] == "text/csv,*/*"
    assert not any("BAD" in key for key in environ)


def test_worker_request_path_treats_an_empty_connection_as_a_probe():
    import socket

    from supervisor_app.worker.sync_worker import read_request

    left, right = socket.socketpair()
    left.close()
    with right:
        assert read_request(right) is None


def test_s3_submit_directory_falls_back_to_model_code():
    config = serve_config(SAGEMAKER_SUBMIT_DIRECTORY="s3://bucket/code.tar.gz", SAGEMAKER_BASE_DIR="/x")
    assert config.code_dir == Path("/x/model/code")
    assert serve_config(SAGEMAKER_SUBMIT_DIRECTORY="/srv/code").code_dir == Path("/srv/code")
    assert serve_config(SAGEMAKER_PROGRAM="handler.py").module_name == "handler"


def test_available_cpus_is_positive_and_within_affinity():
    import os

    from supervisor_app.cpus import available_cpus

    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
