"""Pure parts of engine mode: settings, the plan, the rendered nginx.conf (checked by nginx -t)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from supervisor_app.config import load_config
from supervisor_app.config.engine import ENGINE_SETTINGS, load_engine_config
from supervisor_app.errors import ConfigError
from supervisor_app.serve.engine.nginx_conf import EngineNginxSettings, render_engine_nginx_conf
from supervisor_app.config.serve import load_serve_config
from supervisor_app.serve.engine.plan import plan_engine, program_of, shell_argv
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


@pytest.mark.parametrize("auto", [False, True])
def test_engine_nginx_conf_passes_nginx_t(tmp_path, auto):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    (tmp_path / "nginx").mkdir()
    conf = render_engine_nginx_conf(EngineNginxSettings(
        run_dir=tmp_path, port=18124, engine_host="127.0.0.1", engine_port=8000,
        invocations_path="auto" if auto else "/v1/chat/completions", max_body_bytes=6 * 1024 * 1024, timeout_s=60,
        worker_connections=64, keepalive_s=5, log_ping=False,
        router_socket=tmp_path / "router.sock" if auto else None))
    assert ("proxy_pass http://smc_router;" in conf) is auto
    assert ("proxy_pass http://smc_engine/v1/chat/completions;" in conf) is not auto
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


def test_engine_flags_from_env_rule():
    from supervisor_app.config.engine_args import flags_from_env, parse_args_prefix

    env = {"SM_VLLM_MAX_MODEL_LEN": "4096", "SM_VLLM_ENABLE_LORA": "TRUE", "SM_VLLM_ENFORCE_EAGER": "false",
           "SM_VLLM_TRUST_REMOTE_CODE": "", "SM_VLLM_CHAT_TEMPLATE": "a b", "SM_SGLANG_X": "1", "OTHER": "2"}
    assert flags_from_env("SM_VLLM_", env) == ("--chat-template", "a b", "--enable-lora", "--max-model-len", "4096",
                                              "--trust-remote-code")
    assert flags_from_env("SM_SGLANG_", env) == ("--x", "1")
    assert parse_args_prefix("X", " SM_VLLM_ ") == "SM_VLLM_"
    for bad in ("sm_vllm_", "SM_VLLM", "SMC_", "SM_", "SAGEMAKER_", "S", "SM VLLM_", "_X_"):
        with pytest.raises(ConfigError, match="SMC_ENGINE_ARGS_FROM"):
            parse_args_prefix("SMC_ENGINE_ARGS_FROM", bad)
    with pytest.raises(ConfigError, match="SM_VLLM_-X"):
        flags_from_env("SM_VLLM_", {"SM_VLLM_-X": "1"})


def test_engine_args_are_appended_to_the_command_as_shell_words(tmp_path):
    import shlex

    config = load_config({"SMC_ENGINE_COMMAND": "true --a", "SMC_ENGINE_ARGS_FROM": "SM_VLLM_",
                          "SM_VLLM_CHAT_TEMPLATE": "it's $HOME", "SM_VLLM_X": "true"})
    engine = load_engine_config(config)
    plan = plan_engine(load_serve_config(config), engine, engine.command, os.environ.get("PATH", ""))
    assert shlex.split(plan.command) == ["true", "--a", "--chat-template", "it's $HOME", "--x"]


def test_route_for_picks_the_first_field_and_says_what_it_looked_for():
    from supervisor_app.serve.engine.router import RouteError, answer, route_for

    assert route_for(b'{"messages": [], "prompt": "p"}') == "/v1/chat/completions"
    assert route_for(b'{"prompt": "p", "input": 1}') == "/v1/completions"
    assert route_for(b'{"input": [1]}') == "/v1/embeddings"
    for body in (b"", b"[1]", b'{"inputs": 1}', b"\xff", b'"messages"'):
        with pytest.raises(RouteError) as err:
            route_for(body)
        assert all(word in err.value.message for word in ("messages", "prompt", "input", "route=/v1/"))
    assert b"X-Accel-Redirect: /_smc_engine/v1/embeddings?a=1&b=2\r\n" in answer("/invocations?a=1&b=2", b'{"input":1}')
    assert answer("/invocations", b"x").startswith(b"HTTP/1.1 400 ")
