"""Training-toolkit extras: CA_REPOSITORY_ARN for the requirements install, output/intermediate sync."""

from __future__ import annotations

import pytest

from tests.fake_codeartifact import FakeCodeArtifact
from tests.serve.wheels import build_wheel
from tests.train.trainkit import failure, log_events, make_job, script, train_env


@pytest.fixture
def codeartifact(tmp_path):
    build_wheel(tmp_path / "ca-wheels", "smc-parity-pkg", "2.0", "VALUE = 'from codeartifact'\n")
    server = FakeCodeArtifact(tmp_path / "ca-wheels")
    yield server
    server.close()


def test_requirements_come_from_the_codeartifact_repository(smc, tmp_path, codeartifact):
    base = make_job(tmp_path)
    (base / "code" / "requirements.txt").write_text("smc-parity-pkg==2.0\n")
    script(base, "train.py", "import smc_parity_pkg\nprint('value', smc_parity_pkg.VALUE)\n")
    done = smc("train", env=train_env(base, SAGEMAKER_PROGRAM="train.py", SMC_PYTHON="embedded",
                                      SMC_PREFIX=str(tmp_path / "prefix"), **codeartifact.env()), timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "value from codeartifact" in done.stdout
    started = [e for e in log_events(done.stdout, done.stderr) if e["event"] == "pip_install_started"][0]
    assert started["argv"][-2:] == ["--index-url", f"http://aws:***@{codeartifact.url[7:]}/pypi/my-repo/simple/"]


def test_codeartifact_failure_fails_the_job_with_a_named_error(smc, tmp_path, codeartifact):
    base = make_job(tmp_path)
    (base / "code" / "requirements.txt").write_text("smc-parity-pkg==2.0\n")
    script(base, "train.py", "print('should not run')\n")
    env = {**codeartifact.env(), "AWS_SECRET_ACCESS_KEY": "wrong"}
    done = smc("train", env=train_env(base, SAGEMAKER_PROGRAM="train.py", SMC_PYTHON="embedded",
                                      SMC_PREFIX=str(tmp_path / "prefix"), **env), timeout=120)
    assert done.returncode != 0
    assert "should not run" not in done.stdout
    assert "CodeArtifact GetAuthorizationToken for my-domain/my-repo failed: HTTP 403" in failure(base)
