"""Pure functions of smc train, against the source (fast): rendering, encoding, bounds, cgroups,
and the SigV4 signature checked against botocore's own signer."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from supervisor_app import cpus
from supervisor_app.config.job_files import decode_hyperparameters
from supervisor_app.train import environment, hyperparams, runner, s3


def test_decode_hyperparameters_json_else_raw_and_reports_non_strings():
    decoded, not_strings, undecoded = decode_hyperparameters(
        {"a": "1", "b": '"x"', "c": "not json", "d": 5, "e": "null"}
    )
    assert decoded == {"a": 1, "b": "x", "c": "not json", "d": 5, "e": None}
    assert not_strings == ["d"] and undecoded == ["c"]


def test_argv_rendering_matches_the_toolkit_rules():
    user = {
        "lr": 0.1,
        "b": True,
        "big": 1e3,
        "l": [1, "x", True, None],
        "d": {"z": 1, "a": [1, 2]},
        "n": None,
        "s": "a b;c",
        "Z": "upper first",
    }
    assert hyperparams.to_argv(user) == [
        "-Z",
        "upper first",
        "-b",
        "True",
        "--big",
        "1000.0",
        "-d",
        "a=[1, 2],z=1",
        "-l",
        "[1, 'x', True, None]",
        "--lr",
        "0.1",
        "-n",
        "",
        "-s",
        "a b;c",
    ]


def test_split_keeps_reserved_keys_out_of_user_args():
    split = hyperparams.split(
        {
            "epochs": 1,
            "sagemaker_program": "t.py",
            "_tuning_objective_metric": "m",
            "sagemaker_mpi_enabled": True,
        }
    )
    assert split.user == {"epochs": 1}
    assert split.framework == {"sagemaker_mpi_enabled": True}
    assert set(split.launcher) == {"sagemaker_program", "_tuning_objective_metric", "sagemaker_mpi_enabled"}


def test_encode_is_compact_sorted_ascii_json_except_strings_and_null():
    assert environment.encode("a b") == "a b"
    assert environment.encode(None) == ""
    assert environment.encode({"b": 1, "a": "é"}) == '{"a":"\\u00e9","b":1}'
    assert environment.encode(True) == "true"


def test_tail_is_bounded():
    tail = runner.Tail(limit=10)
    for _ in range(1000):
        tail.add(b"0123456789abcdef")
    assert tail.value() == b"6789abcdef"


def test_failure_text_puts_cause_first_and_fits_1024_bytes_even_with_multibyte_text():
    text = runner.failure_text(
        "Training script train.py failed: exit code 1", ("é" * 100 + "\n").encode() * 200
    )
    assert text.startswith("Training script train.py failed: exit code 1\n\nstderr (last lines):\n")
    assert len(text.encode()) <= 1024
    long_cause = runner.failure_text("x" * 5000, b"tail")
    assert len(long_cause.encode()) <= 1024 and long_cause.endswith("...")


@pytest.mark.parametrize(
    "cpu_max, expected",
    [("max 100000", None), ("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1)],
)
def test_cgroup_v2_cpu_limit(tmp_path: Path, cpu_max, expected):
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert cpus.cgroup_cpu_limit(tmp_path) == expected


def test_cgroup_v1_cpu_limit(tmp_path: Path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu/cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu/cpu.cfs_period_us").write_text("100000\n")
    assert cpus.cgroup_cpu_limit(tmp_path) == 3
    (tmp_path / "cpu/cpu.cfs_quota_us").write_text("-1\n")
    assert cpus.cgroup_cpu_limit(tmp_path) is None


def test_num_cpus_is_at_most_the_host_count(tmp_path: Path):
    import os

    assert 1 <= cpus.available_cpus(tmp_path) <= (os.cpu_count() or 1)


@pytest.mark.parametrize("token", ["", "session-token"])
@pytest.mark.parametrize(
    "url",
    [
        "https://bkt.s3.eu-west-1.amazonaws.com/jobs/job%201/source/sourcedir.tar.gz",
        "http://127.0.0.1:9000/bkt/a/b~c/d.tar.gz",
    ],
)
def test_sigv4_signature_matches_botocore(url, token):
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    now = datetime.datetime(2026, 11, 26, 1, 2, 3, tzinfo=datetime.UTC)
    ours = s3.sign("GET", url, "eu-west-1", s3.Credentials("AKIDEXAMPLE", "secret/key+x", token), now=now)

    # botocore's own canonical request, string to sign and signature, on the same request.
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    request = AWSRequest(
        method="GET", url=url, headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD", "X-Amz-Date": amz_date}
    )
    if token:
        request.headers["X-Amz-Security-Token"] = token
    request.context["timestamp"] = amz_date
    signer = S3SigV4Auth(Credentials("AKIDEXAMPLE", "secret/key+x", token or None), "s3", "eu-west-1")
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    assert ours["Authorization"].endswith(f"Signature={signature}")
    assert ours["x-amz-date"] == amz_date


def test_s3_url_must_name_bucket_and_key():
    from supervisor_app.errors import ConfigError

    assert s3.parse_url("s3://b/k/x.tar.gz") == ("b", "k/x.tar.gz")
    with pytest.raises(ConfigError, match="is not an s3://bucket/key URL"):
        s3.parse_url("s3://bucket-only")


def test_entry_point_kind_rules(tmp_path: Path):
    from supervisor_app.train.entry_point import Kind, kind_of

    assert kind_of(tmp_path, "train.py") is Kind.PROGRAM
    assert kind_of(tmp_path, "train") is Kind.COMMAND
    (tmp_path / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")
    assert kind_of(tmp_path, "train.py") is Kind.PROGRAM  # tool settings only: not a package
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert kind_of(tmp_path, "train.py") is Kind.PACKAGE
    assert kind_of(tmp_path, "run.sh") is Kind.SHELL  # .sh wins, as in the toolkit


@pytest.mark.parametrize("name", ["train.py", "bin/train.sh", "a+b-c_d.py", ".hidden.py"])
def test_entry_point_names_accepted(name):
    from supervisor_app.train.entry_point import validate_name

    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-m.py", "/abs.py", "../x.py", "a/./b.py", "a b.py", "x;y", "a//b"])
def test_entry_point_names_refused(name):
    from supervisor_app.errors import ConfigError
    from supervisor_app.train.entry_point import validate_name

    with pytest.raises(ConfigError):  # exit code 5: the setting is wrong
        validate_name(name)
