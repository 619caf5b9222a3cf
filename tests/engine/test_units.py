"""Pure parts of engine mode: settings, the plan, the rendered nginx.conf (checked by nginx -t)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from supervisor_app.config import load_config
from supervisor_app.config.engine import ENGINE_SETTINGS, load_engine_config
from supervisor_app.errors import ConfigError
from supervisor_app.serve.engine.nginx_conf import EngineNginxSettings, render_engine_nginx_conf
from supervisor_app.serve.engine.plan import program_of, shell_argv
from tests.conftest import ROOT


def _engine(**env: str):
    return load_engine_config(load_config(env))


def test_every_engine_setting_is_documented_in_docs_engines():
    text = (ROOT / "docs" / "engines.md").read_text()
    for setting in ENGINE_SETTINGS:
        assert setting.doc and setting.group == "engine", setting.field
        for name in setting.env:
            assert f"`{name}`" in text, name


def test_engine_settings_and_aliases():
    config = _engine(LAUNCH_COMMAND="vllm serve m", ENGINE_MAX_START_RETRIES="7", SMC_ENGINE_URL="http://[::1]:9000")
    assert config.command == "vllm serve m" and config.max_restarts == 7
    assert (config.host, config.port) == ("::1", 9000)
    assert _engine(SMC_ENGINE_COMMAND="a", LAUNCH_COMMAND="b").command == "a"
    assert _engine(PROCESS_AUTO_RECOVERY="false", SMC_ENGINE_MAX_RESTARTS="4").max_restarts == 0
    assert _engine(SMC_ENGINE_STOP_SIGNAL="sigint").stop_signal == 2
    for bad in ({"SMC_ENGINE_URL": "https://x:1"}, {"SMC_ENGINE_URL": "http://x:1/v1"},
                {"SMC_ENGINE_HEALTH_PATH": "health"}, {"SMC_ENGINE_STOP_SIGNAL": "NOPE"},
                {"SMC_ENGINE_MAX_RESTARTS": "-1"}):
        with pytest.raises(ConfigError) as err:
            _engine(**bad)
        assert next(iter(bad)) in err.value.message


def test_simple_commands_are_execed_compound_ones_are_not():
    assert shell_argv("vllm serve m --port 8000") == ("/bin/sh", "-c", "exec vllm serve m --port 8000")
    assert shell_argv("cd /m && mlserver start .")[2] == "cd /m && mlserver start ."
    assert shell_argv("FOO=1 engine")[2] == "FOO=1 engine"
    assert program_of("FOO=1 /usr/bin/engine --x") == "/usr/bin/engine"
    assert program_of("exec engine") is None


def test_engine_nginx_conf_passes_nginx_t(tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    (tmp_path / "nginx").mkdir()
    conf = render_engine_nginx_conf(EngineNginxSettings(
        run_dir=tmp_path, port=18124, engine_host="127.0.0.1", engine_port=8000,
        invocations_path="/v1/chat/completions", max_body_bytes=6 * 1024 * 1024, timeout_s=60,
        worker_connections=64, keepalive_s=5, log_ping=False))
    assert "proxy_pass http://smc_engine/v1/chat/completions;" in conf
    assert "proxy_buffering off;" in conf and "proxy_http_version 1.1;" in conf
    (tmp_path / "nginx.conf").write_text(conf)
    result = subprocess.run([nginx, "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert Path(tmp_path / "nginx.conf").read_text().count("location") >= 4


def test_docs_show_the_example_dockerfile_as_it_is():
    text = (ROOT / "docs" / "engines.md").read_text()
    marker = "<!-- example:examples/engine/Dockerfile -->\n```dockerfile\n"
    assert marker in text
    block = text.split(marker, 1)[1].split("```", 1)[0]
    assert block == (ROOT / "examples" / "engine" / "Dockerfile").read_text()
    # every other Dockerfile is marked as an example a test builds; fragments have no `dockerfile` tag
    assert text.count("```dockerfile") == text.count("-->\n```dockerfile")


def test_supervisor_package_is_imported_only_for_a_programs_file():
    import sys

    code = ("import sys\n"
            "import supervisor_app.serve.command, supervisor_app.serve.engine.mode, supervisor_app.train.command\n"
            "import supervisor_app.train.sidecars, supervisor_app.doctor.checks_engine\n"
            "print('supervisor' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_nginx_reports_of_broken_engine_answers_become_engine_events():
    from supervisor_app.supervision import nginx_lines

    tail = (', client: 127.0.0.1, server: _, request: "POST /invocations HTTP/1.1", '
            'upstream: "http://127.0.0.1:8000/v1/x", host: "h"')
    line = (b"2026/12/06 09:34:26 [error] 25#25: *7 upstream sent no valid HTTP/1.0 header while reading "
            b"response header from upstream" + tail.encode())
    record = nginx_lines.parse(line, "engine")
    assert record["event"] == "engine_answer_not_http" and record["level"] == "error"
    assert record["connection"] == 7 and record["pid"] == 25
    assert record["request"] == "POST /invocations HTTP/1.1" and record["upstream_url"] == "http://127.0.0.1:8000/v1/x"
    assert record["reason"].startswith("the engine's answer is not HTTP")
    before = nginx_lines.parse(b"2026/12/06 09:34:26 [error] 25#25: *8 upstream sent invalid chunked response "
                               b"while reading response header from upstream" + tail.encode(), "engine")
    after = nginx_lines.parse(b"2026/12/06 09:34:26 [error] 25#25: *9 upstream sent invalid chunked response "
                              b"while reading upstream" + tail.encode(), "engine")
    assert before["event"] == after["event"] == "engine_chunked_body_invalid"
    assert "got nothing" in before["reason"] and "got nothing" not in after["reason"]
    plain = nginx_lines.parse(b"2026/12/06 09:34:26 [emerg] 3#3: bind() failed (98: Address in use)")
    assert plain == {"level": "critical", "pid": 3, "message": "bind() failed (98: Address in use)"}
    assert nginx_lines.parse(b"not an nginx line") is None
    serve_mode = nginx_lines.parse(line)
    assert serve_mode["event"] == "upstream_answer_not_http" and serve_mode["reason"].startswith("the upstream's")
