"""smc doctor on engine settings and programs files (frozen binary)."""

from __future__ import annotations

import json


def _doctor(smc, opt_ml, **env):
    result = smc("doctor", "serve", "--json", env={"SAGEMAKER_BASE_DIR": str(opt_ml), **env})
    report = json.loads(result.stdout)
    return result.returncode, {f["check"]: f for f in report["findings"]}


def test_doctor_accepts_a_startable_engine_without_a_handler(smc, opt_ml):
    code, found = _doctor(smc, opt_ml, SMC_ENGINE_COMMAND="python3 -m http.server 8000")
    assert found["engine_command"]["status"] == "ok"
    assert found["engine_url"]["status"] == "ok"
    assert "handler" not in found  # engine mode needs no inference.py
    assert code == 0, found


def test_doctor_fails_missing_engine_command_and_port_clash(smc, opt_ml):
    code, found = _doctor(smc, opt_ml, SMC_ENGINE_COMMAND="no-such-engine --port 8000")
    assert code == 1 and found["engine_command"]["status"] == "fail"
    assert "no-such-engine" in found["engine_command"]["message"]
    code, found = _doctor(smc, opt_ml, SMC_ENGINE_COMMAND="true", SMC_ENGINE_URL="http://127.0.0.1:8080")
    assert code == 1 and found["engine_port"]["status"] == "fail"
    code, found = _doctor(smc, opt_ml, SMC_ENGINE_COMMAND="true", SMC_ENGINE_URL="localhost")
    assert code == 1 and found["engine_config"]["status"] == "fail"


def test_doctor_reports_programs_file_errors_with_file_and_line(smc, opt_ml, tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("[program:a]\ncommand=true\n[program:b\n")
    code, found = _doctor(smc, opt_ml, SMC_PROGRAMS=str(bad))
    assert code == 1 and found["programs_file"]["status"] == "fail"
    assert str(bad) in found["programs_file"]["message"] and "line 3" in found["programs_file"]["message"]
    good = tmp_path / "good.conf"
    good.write_text("[program:engine]\ncommand=python3 -m http.server 8000\nfrobnicate=1\n\n[program:side]\ncommand=sleep 1\n")
    code, found = _doctor(smc, opt_ml, SMC_PROGRAMS=str(good))
    assert found["programs_file"]["status"] in ("ok", "warn")
    assert found["engine_command"]["status"] == "ok"
    assert code == 0


def test_doctor_fails_an_engine_script_path_with_a_typo(smc, opt_ml, tmp_path):
    """doctor said "can be started" for `python3 /app/serv.py` (a typo), while serve gave up after
    its restarts (issue 24 item 3): the script an interpreter is asked to run must exist."""
    script = tmp_path / "engine.py"
    script.write_text("print('up')\n")
    code, found = _doctor(smc, opt_ml, SMC_ENGINE_COMMAND=f"python3 -u {tmp_path / 'engin.py'} --port 8000")
    assert code == 1 and found["engine_command"]["status"] == "fail", found
    assert "engin.py" in found["engine_command"]["message"] and "does not exist" in found["engine_command"]["message"]
    for good in (f"python3 -u {script} --port 8000", f"exec python3 {script}", "python3 -m http.server 8000"):
        code, found = _doctor(smc, opt_ml, SMC_ENGINE_COMMAND=good)
        assert found["engine_command"]["status"] == "ok", (good, found)


def test_doctor_shows_auto_routing_and_the_flags_from_env(smc, opt_ml):
    code, found = _doctor(smc, opt_ml, SMC_ENGINE_COMMAND="python3 -m http.server 8000",
                          SMC_ENGINE_INVOCATIONS_PATH="auto", SMC_ENGINE_ARGS_FROM="SM_VLLM_",
                          SM_VLLM_MAX_MODEL_LEN="4096", SM_VLLM_ENABLE_LORA="true", SM_VLLM_ENFORCE_EAGER="false",
                          SM_VLLM_CHAT_TEMPLATE="a b")
    assert code == 0, found
    assert "messages, prompt, input" in found["engine_url"]["message"]
    assert found["engine_args"]["status"] == "ok"
    assert "--chat-template 'a b' --enable-lora --max-model-len 4096" in found["engine_args"]["message"]
    code, found = _doctor(smc, opt_ml, SMC_ENGINE_COMMAND="true", SMC_ENGINE_ARGS_FROM="SM_SGLANG_")
    assert found["engine_args"]["status"] == "warn"
    code, found = _doctor(smc, opt_ml, SMC_ENGINE_COMMAND="true", SMC_ENGINE_ARGS_FROM="SMC_")
    assert code == 1 and found["engine_config"]["status"] == "fail"
    assert "SMC_ENGINE_ARGS_FROM" in found["engine_config"]["message"]


def test_doctor_checks_the_adapter_mode(smc, opt_ml):
    code, found = _doctor(smc, opt_ml, SMC_ENGINE_COMMAND="true", SMC_ENGINE_ADAPTERS="lorax")
    assert code == 1 and found["engine_config"]["status"] == "fail"
    assert "SMC_ENGINE_ADAPTERS" in found["engine_config"]["message"]
    code, found = _doctor(smc, opt_ml, SMC_ENGINE_COMMAND="true vllm serve /opt/ml/model", SMC_ENGINE_ADAPTERS="vllm")
    assert found["engine_adapters"]["status"] == "warn"
    assert "--enable-lora" in found["engine_adapters"]["message"]
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" in found["engine_adapters"]["message"]
    code, found = _doctor(smc, opt_ml, SMC_ENGINE_COMMAND="true vllm serve /opt/ml/model --enable-lora",
                          SMC_ENGINE_ADAPTERS="vllm", VLLM_ALLOW_RUNTIME_LORA_UPDATING="true")
    assert found["engine_adapters"]["status"] == "ok" and "/v1/load_lora_adapter" in found["engine_adapters"]["message"]
    code, found = _doctor(smc, opt_ml, SMC_ENGINE_COMMAND="true", SMC_ENGINE_ADAPTERS="sglang")
    assert found["engine_adapters"]["status"] == "ok" and "/load_lora_adapter" in found["engine_adapters"]["message"]
