"""smc's log lines from the frozen binary: JSON objects with the fixed fields, errors on stderr."""

from __future__ import annotations

import json
import re
from datetime import datetime

EMIT = (
    "from supervisor_app import logs; from supervisor_app.config import load_config; import os, sys;"
    "c = load_config(os.environ); logs.configure(c.log_level, c.log_format);"
    "log = logs.get_logger('train');"
    "log.debug('debug_fact', n=0); log.info('job_started', n=1); log.error('job_failed', exit_code=3)"
)


def test_json_lines_carry_ts_level_event_component_pid(smc):
    result = smc("python", "-c", EMIT, env={"SMC_LOG_FORMAT": "json"})
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    err = [json.loads(line) for line in result.stderr.splitlines()]
    assert [e["event"] for e in out] == ["job_started"]
    assert [e["event"] for e in err] == ["job_failed"]
    info = out[0]
    assert list(info)[:5] == ["ts", "level", "component", "event", "pid"]
    assert info["level"] == "info" and info["component"] == "train" and info["n"] == 1
    assert isinstance(info["pid"], int)
    ts = datetime.fromisoformat(info["ts"].replace("Z", "+00:00"))
    assert ts.utcoffset().total_seconds() == 0
    assert err[0]["exit_code"] == 3 and err[0]["level"] == "error"


def test_level_from_sagemaker_container_log_level_name_or_number(smc):
    for value in ("DEBUG", "10"):
        result = smc("python", "-c", EMIT, env={"SMC_LOG_FORMAT": "json", "SAGEMAKER_CONTAINER_LOG_LEVEL": value})
        assert [json.loads(l)["event"] for l in result.stdout.splitlines()] == ["debug_fact", "job_started"]
    result = smc("python", "-c", EMIT, env={"SMC_LOG_FORMAT": "json", "SM_LOG_LEVEL": "40"})
    assert result.stdout == ""
    assert json.loads(result.stderr)["event"] == "job_failed"


def test_console_format_is_for_people(smc):
    result = smc("python", "-c", EMIT, env={"SMC_LOG_FORMAT": "console"})
    assert result.returncode == 0
    line = result.stdout.strip()
    assert not line.startswith("{")
    assert re.search(r"job_started", line) and "component" in line


def test_auto_format_is_json_when_stdout_is_a_pipe(smc):
    result = smc("python", "-c", EMIT)
    assert json.loads(result.stdout.splitlines()[0])["event"] == "job_started"
