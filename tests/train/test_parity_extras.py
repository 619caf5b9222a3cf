"""Training-toolkit extras: CA_REPOSITORY_ARN for the requirements install, output/intermediate sync."""

from __future__ import annotations

import pytest

from tests import fake_codeartifact
from tests.fake_codeartifact import FakeCodeArtifact
from tests.serve.wheels import build_wheel
from tests.train.trainkit import failure, hyperparameters, log_events, make_job, script, train_env


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


# -- output/intermediate sync (sagemaker_s3_output) against moto's S3 server ----------------------
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
PREFIX = "jobs/out/my-job-1/output/intermediate"

# Runs with the test venv's python (train_env's SMC_PYTHON), which has boto3 to look at S3 mid-run.
WRITER = """
import os, time, boto3
d = os.environ["INTERMEDIATE"]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"], region_name="us-east-1")
with open(os.path.join(d, "ckpt-1.txt"), "w") as f:
    f.write("epoch 1")
deadline = time.time() + 20
while time.time() < deadline:  # uploaded as soon as it is closed, while the job still runs
    try:
        s3.head_object(Bucket="bucket", Key="%s/ckpt-1.txt")
        print("SEEN_DURING_RUN", flush=True)
        break
    except Exception:
        time.sleep(0.1)
os.makedirs(os.path.join(d, "sub", "deeper"))
with open(os.path.join(d, "sub", "deeper", "metrics.json"), "w") as f:
    f.write('{"loss": 0.5}')
with open(os.environ["OUTSIDE"], "w") as f:
    f.write("linked in")
os.link(os.environ["OUTSIDE"], os.path.join(d, "linked.bin"))  # no close event: the final pass sends it
""" % PREFIX


@pytest.fixture
def s3_server(port):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        import boto3
        import requests

        requests.post(f"http://127.0.0.1:{port}/moto-api/reset", timeout=10)  # moto's state is per process
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket="bucket")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _objects(endpoint: str) -> dict[str, bytes]:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    listed = client.list_objects_v2(Bucket="bucket").get("Contents", [])
    return {o["Key"]: client.get_object(Bucket="bucket", Key=o["Key"])["Body"].read() for o in listed}


def test_intermediate_files_are_uploaded_as_closed_and_at_the_end(smc, tmp_path, s3_server):
    base = make_job(tmp_path)
    hyperparameters(base, sagemaker_s3_output="s3://bucket/jobs/out")
    script(base, "train.py", WRITER)
    done = smc("train", env=train_env(base, SAGEMAKER_PROGRAM="train.py", TRAINING_JOB_NAME="my-job-1",
                                      AWS_ENDPOINT_URL_S3=s3_server, INTERMEDIATE=str(base / "output/intermediate"),
                                      OUTSIDE=str(tmp_path / "outside.bin"), **CREDS), timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "SEEN_DURING_RUN" in done.stdout
    assert _objects(s3_server) == {f"{PREFIX}/ckpt-1.txt": b"epoch 1",
                                   f"{PREFIX}/sub/deeper/metrics.json": b'{"loss": 0.5}',
                                   f"{PREFIX}/linked.bin": b"linked in"}
    why = {e["path"]: e["why"] for e in log_events(done.stdout, done.stderr) if e["event"] == "intermediate_uploaded"}
    assert why["ckpt-1.txt"] == "closed" and why["linked.bin"] == "final_pass"


def test_existing_intermediate_dir_is_left_to_the_platform(smc, tmp_path, s3_server):
    base = make_job(tmp_path)
    (base / "output" / "intermediate").mkdir(parents=True)
    hyperparameters(base, sagemaker_s3_output="s3://bucket/jobs/out")
    script(base, "train.py", "open(__import__('os').environ['INTERMEDIATE'] + '/x', 'w').write('x')\n")
    done = smc("train", env=train_env(base, SAGEMAKER_PROGRAM="train.py", AWS_ENDPOINT_URL_S3=s3_server,
                                      INTERMEDIATE=str(base / "output/intermediate"), **CREDS), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    off = [e for e in log_events(done.stdout, done.stderr) if e["event"] == "intermediate_sync_off"]
    assert off and "exists already" in off[0]["why"]
    assert _objects(s3_server) == {}


def test_doctor_checks_the_codeartifact_arn(smc, tmp_path):
    import json

    base = make_job(tmp_path)
    script(base, "train.py", "print('hi')\n")
    for arn, status in ((fake_codeartifact.ARN, "ok"), ("arn:aws:codeartifact:x", "fail")):
        result = smc("doctor", "--json", "train", env={"SAGEMAKER_BASE_DIR": str(base),
                                                       "SAGEMAKER_PROGRAM": "train.py", "CA_REPOSITORY_ARN": arn})
        finding = [f for f in json.loads(result.stdout)["findings"] if f["check"] == "codeartifact"][0]
        assert finding["status"] == status, finding
