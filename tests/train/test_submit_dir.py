"""sagemaker_submit_directory: a directory, a local or file:// tar.gz, an s3:// tar.gz (against
moto's S3 server on loopback), and hostile archives refused by name."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from trainkit import failure, hyperparameters, log_events, make_job, train_env

TRAIN_PY = b"import sys\nprint('submitted code ran', sys.argv[1:])\n"


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, data


def _link(name: str, target: str, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


def _job(tmp_path: Path, source: str) -> Path:
    base = make_job(tmp_path)
    hyperparameters(base, sagemaker_program="train.py", sagemaker_submit_directory=source, epochs=1)
    return base


def test_local_tar_gz_and_file_url_are_extracted_into_an_empty_code_dir(smc, tmp_path):
    archive = _tar(
        tmp_path / "sourcedir.tar.gz", [_file("train.py", TRAIN_PY), _file("lib/util.py", b"X = 1\n")]
    )
    for source in (str(archive), f"file://{archive}"):
        base = make_job(tmp_path, name=f"job{len(source)}")
        hyperparameters(base, sagemaker_program="train.py", sagemaker_submit_directory=source, epochs=1)
        done = smc("train", env=train_env(base))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "submitted code ran ['--epochs', '1']" in done.stdout
        assert (base / "code/lib/util.py").read_text() == "X = 1\n"


def test_directory_submit_dir_is_copied(smc, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_bytes(TRAIN_PY)
    base = _job(tmp_path, str(source))
    done = smc("train", env=train_env(base))
    assert done.returncode == 0
    assert "submitted code ran" in done.stdout


def test_non_empty_code_dir_wins_and_says_so(smc, tmp_path):
    base = _job(tmp_path, "s3://bucket/never/downloaded.tar.gz")
    (base / "code/train.py").write_bytes(TRAIN_PY)
    done = smc("train", env=train_env(base))
    assert done.returncode == 0
    ready = next(e for e in log_events(done.stdout) if e["event"] == "code_dir_ready")
    assert ready["action"] == "kept_existing_code_dir"


@pytest.mark.parametrize(
    "member, problem",
    [
        (_file("/tmp/evil.py", b"x"), "member '/tmp/evil.py' has an absolute path"),
        (_file("../evil.py", b"x"), "member '../evil.py' contains '..'"),
        (_file("lib/../../evil.py", b"x"), "member 'lib/../../evil.py' contains '..'"),
        (
            _link("escape", "../../etc"),
            "member 'escape' is a link to '../../etc', outside the code directory",
        ),
        (_link("abs", "/etc/passwd"), "member 'abs' is a link to '/etc/passwd', outside the code directory"),
        (_link("hard", "/etc/passwd", hard=True), "member 'hard' is a link to '/etc/passwd'"),
    ],
    ids=["absolute", "dotdot", "nested-dotdot", "symlink-escape", "symlink-absolute", "hardlink"],
)
def test_hostile_tar_is_refused_naming_the_member(smc, tmp_path, member, problem):
    archive = _tar(tmp_path / "evil.tar.gz", [_file("train.py", TRAIN_PY), member])
    base = _job(tmp_path, str(archive))
    done = smc("train", env=train_env(base))
    assert done.returncode == 1
    text = failure(base)
    assert text.startswith(f"refusing to extract {archive}: {problem}")
    assert "submitted code ran" not in done.stdout
    assert not (tmp_path / "evil.py").exists() and not (base / "code/train.py").exists()


def test_symlink_inside_the_code_dir_is_fine(smc, tmp_path):
    archive = _tar(tmp_path / "ok.tar.gz", [_file("real.py", TRAIN_PY), _link("train.py", "real.py")])
    base = _job(tmp_path, str(archive))
    done = smc("train", env=train_env(base))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitted code ran" in done.stdout


def test_missing_local_submit_dir_is_named(smc, tmp_path):
    base = _job(tmp_path, str(tmp_path / "nope.tar.gz"))
    done = smc("train", env=train_env(base))
    assert done.returncode == 5
    assert failure(base).startswith(f"submit directory '{tmp_path}/nope.tar.gz' does not exist")


# ---- s3:// against moto's S3 server ------------------------------------------------------------

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


@pytest.fixture
def s3_server(port):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _upload(endpoint: str, bucket: str, key: str, data: bytes) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key=key, Body=data)


def test_s3_submit_dir_is_downloaded_and_extracted(smc, tmp_path, s3_server):
    archive = _tar(tmp_path / "sourcedir.tar.gz", [_file("train.py", TRAIN_PY)])
    _upload(s3_server, "my-bucket", "jobs/job 1/source/sourcedir.tar.gz", archive.read_bytes())
    base = _job(tmp_path, "s3://my-bucket/jobs/job 1/source/sourcedir.tar.gz")
    done = smc("train", env=train_env(base, AWS_ENDPOINT_URL_S3=s3_server, **CREDS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitted code ran ['--epochs', '1']" in done.stdout
    ready = next(e for e in log_events(done.stdout) if e["event"] == "code_dir_ready")
    assert ready["action"] == "extracted_s3_archive"


def test_s3_missing_key_is_a_clear_error(smc, tmp_path, s3_server):
    _upload(s3_server, "my-bucket", "other", b"x")
    base = _job(tmp_path, "s3://my-bucket/missing/sourcedir.tar.gz")
    done = smc("train", env=train_env(base, S3_ENDPOINT_URL=s3_server, **CREDS))
    assert done.returncode == 1
    text = failure(base)
    assert text.startswith("cannot download s3://my-bucket/missing/sourcedir.tar.gz: HTTP 404 NoSuchKey")
    assert "check the bucket and key" in text


def test_s3_without_credentials_says_where_they_come_from(smc, tmp_path, s3_server):
    base = _job(tmp_path, "s3://my-bucket/x.tar.gz")
    done = smc("train", env=train_env(base, S3_ENDPOINT_URL=s3_server, AWS_EC2_METADATA_DISABLED="true"))
    assert done.returncode == 1
    assert failure(base).startswith("no AWS credentials to download the s3:// submit directory")


def test_s3_credentials_from_the_container_endpoint(smc, tmp_path, s3_server):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen_auth = []

    class Credentials(BaseHTTPRequestHandler):
        def do_GET(self):
            seen_auth.append(self.headers.get("Authorization"))
            body = json.dumps(
                {
                    "AccessKeyId": "testing",
                    "SecretAccessKey": "testing",
                    "Token": "tok",
                    "Expiration": "2099-01-01T00:00:00Z",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        cred_port = s.getsockname()[1]
    server = ThreadingHTTPServer(("127.0.0.1", cred_port), Credentials)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        archive = _tar(tmp_path / "sourcedir.tar.gz", [_file("train.py", TRAIN_PY)])
        _upload(s3_server, "cred-bucket", "sourcedir.tar.gz", archive.read_bytes())
        base = _job(tmp_path, "s3://cred-bucket/sourcedir.tar.gz")
        env = train_env(
            base,
            S3_ENDPOINT_URL=s3_server,
            AWS_REGION="us-east-1",
            AWS_CONTAINER_CREDENTIALS_FULL_URI=f"http://127.0.0.1:{cred_port}/creds",
            AWS_CONTAINER_AUTHORIZATION_TOKEN="secret-token",
        )
        done = smc("train", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert seen_auth == ["secret-token"]
    finally:
        server.shutdown()
        server.server_close()
