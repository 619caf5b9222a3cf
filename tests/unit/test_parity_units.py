"""Pure parts of the parity features: GPU choice, CodeArtifact ARNs and URLs, intermediate plans."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor_app import codeartifact
from supervisor_app.errors import ConfigError
from supervisor_app.worker import gpus
from supervisor_app.train import intermediate


def test_gpu_pick_takes_the_least_used_lowest_first():
    assert gpus.pick(("0", "1"), []) == "0"
    assert gpus.pick(("0", "1"), ["0"]) == "1"
    assert gpus.pick(("0", "1"), ["0", "1"]) == "0"
    assert gpus.pick(("0", "1", "2"), ["0", "2", "0"]) == "1"


def test_gpu_detection_falls_back_to_proc_and_never_raises(tmp_path):
    environ = {"PATH": str(tmp_path / "empty")}
    assert gpus.detect(environ, proc_dir=tmp_path / "missing").devices == ()
    proc = tmp_path / "gpus"
    for bus in ("0000:00:1e.0", "0000:00:1f.0"):
        (proc / bus).mkdir(parents=True)
    found = gpus.detect(environ, proc_dir=proc)
    assert found.devices == ("0", "1") and found.source == str(proc)


def test_codeartifact_arn_parts_and_errors():
    repo = codeartifact.parse_arn("arn:aws:codeartifact:eu-west-1:123456789012:repository/my-domain/my.repo")
    assert (repo.region, repo.owner, repo.domain, repo.name) == ("eu-west-1", "123456789012", "my-domain", "my.repo")
    assert codeartifact.endpoint(repo, {}) == "https://codeartifact.eu-west-1.amazonaws.com"
    china = codeartifact.parse_arn("arn:aws-cn:codeartifact:cn-north-1:123456789012:repository/d1/r1")
    assert codeartifact.endpoint(china, {}).endswith(".amazonaws.com.cn")
    for bad in ("", "arn:aws:codeartifact:eu-west-1:123:repository/d/r", "arn:aws:s3:::bucket",
                "arn:aws:codeartifact:eu-west-1:123456789012:domain/my-domain"):
        with pytest.raises(ConfigError, match="is not a CodeArtifact repository ARN"):
            codeartifact.parse_arn(bad)


def test_codeartifact_index_url_carries_the_token_and_logs_hide_it():
    url = codeartifact.authenticated_index("https://d-123.d.codeartifact.eu-west-1.amazonaws.com/pypi/r/", "a/b+c=")
    assert url == "https://aws:a%2Fb%2Bc%3D@d-123.d.codeartifact.eu-west-1.amazonaws.com/pypi/r/simple/"
    assert codeartifact.redact(url) == "https://aws:***@d-123.d.codeartifact.eu-west-1.amazonaws.com/pypi/r/simple/"


@pytest.mark.parametrize("s3_output, exists, expected", [
    ("s3://bucket/some/prefix", False, ("bucket", "some/prefix/job-1/output/intermediate")),
    ("s3://bucket", False, ("bucket", "job-1/output/intermediate")),
    ("s3://bucket/p", True, "exists already"),
    ("file:///opt/ml/output", False, "local output"),
    ("http://bucket/p", False, "is not an s3:// URL"),
    (None, False, "no sagemaker_s3_output"),
])
def test_intermediate_plan(tmp_path: Path, s3_output, exists, expected):
    directory = tmp_path / "intermediate"
    if exists:
        directory.mkdir()
    target, why = intermediate.plan(s3_output, directory, "job-1")
    if isinstance(expected, tuple):
        assert (target.bucket, target.key_prefix) == expected
    else:
        assert target is None and expected in why
