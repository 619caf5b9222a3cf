"""TLS where the image keeps its CA certificates somewhere other than Debian's /etc/ssl: the
bundled OpenSSL must find them (supervisor_app/tls.py), and programs that are not smc must not
see the SSL_CERT_FILE smc sets for itself.

The CA is made here and placed ONLY at one distribution's path in a container of smc-base (with
an empty /etc/ssl, as on RHEL-like images, where /etc/ssl/certs holds no hashed names); the TLS
servers (moto's S3 and the fake CodeArtifact) listen on the host's loopback, which the container
shares (--network host).
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import json
import ssl
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.images.conftest import docker
from tests.serve.wheels import build_wheel

pytestmark = pytest.mark.docker

BASE = "smc-base:latest"
RHEL_BUNDLE = "/etc/pki/tls/certs/ca-bundle.crt"
CREDS = {"AWS_ACCESS_KEY_ID": "AKIAFAKECODEARTIFACT", "AWS_SECRET_ACCESS_KEY": "fake/secret+key",
         "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="module")
def base_image(docker_engine) -> str:
    subprocess.run(["bash", str(ROOT / "build" / "base-image.sh")], check=True, capture_output=True, timeout=900)
    return BASE


# ---- a CA of our own and a server certificate for 127.0.0.1 --------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smc test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": out / "ca.pem", "cert": out / "server.pem", "key": out / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


def server_context(pki: dict[str, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    return context


@pytest.fixture
def s3(pki):
    """moto's S3 app behind TLS with our certificate, on loopback."""
    import boto3
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", free_port(), DomainDispatcherApplication(create_backend_app), threaded=True,
                         ssl_context=server_context(pki))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"https://127.0.0.1:{server.server_port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", verify=str(pki["ca"]),
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    try:
        yield endpoint, client
    finally:
        server.shutdown()


@pytest.fixture
def codeartifact(pki, tmp_path):
    from tests.fake_codeartifact import FakeCodeArtifact

    build_wheel(tmp_path / "ca-wheels", "smc-tls-pkg", "1.0", "VALUE = 'from codeartifact over tls'\n")
    server = FakeCodeArtifact(tmp_path / "ca-wheels", tls=server_context(pki))
    try:
        yield server
    finally:
        server.close()


def run_in_container(image: str, smc_binary: Path, ca: Path, ca_path: str, *args: str,
                     env: dict[str, str] | None = None, mounts: list[str] | None = None) -> subprocess.CompletedProcess:
    """smc in a container whose only CA is `ca` at ca_path; /etc/ssl is empty (a fresh tmpfs)."""
    argv = ["run", "--rm", "--network", "host", "--tmpfs", "/etc/ssl", "-v", f"{ca}:{ca_path}:ro",
            "-v", f"{smc_binary}:/usr/local/bin/smc:ro", *(mounts or [])]
    for name, value in (env or {}).items():
        argv += ["-e", f"{name}={value}"]
    return docker(*argv, image, "smc", *args, timeout=300)


def _tar_gz(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


TRAIN_PY = """
import os, smc_tls_pkg
with open(os.path.join(os.environ["SM_OUTPUT_INTERMEDIATE_DIR"], "ckpt.txt"), "w") as f:
    f.write("step 1 " + smc_tls_pkg.VALUE)
print("trained with", smc_tls_pkg.VALUE, flush=True)
"""


def test_s3_entry_point_codeartifact_and_output_sync_trust_the_rhel_bundle(
    base_image, smc_binary, pki, s3, codeartifact, tmp_path
):
    """One job over TLS with the CA at RHEL's path only: the code comes from s3:// (smc's S3
    client), its requirements from CodeArtifact (smc's API client, then the bundled pip), and
    output/intermediate goes back to S3 while it runs (smc's upload)."""
    endpoint, client = s3
    client.create_bucket(Bucket="bucket")
    client.put_object(Bucket="bucket", Key="src/sourcedir.tar.gz",
                      Body=_tar_gz({"train.py": TRAIN_PY, "requirements.txt": "smc-tls-pkg==1.0\n"}))
    base = tmp_path / "ml"
    for sub in ("input/config", "input/data", "model", "output", "code"):
        (base / sub).mkdir(parents=True)
    hyper = {"sagemaker_program": "train.py", "sagemaker_submit_directory": "s3://bucket/src/sourcedir.tar.gz",
             "sagemaker_s3_output": "s3://bucket/out"}
    (base / "input/config/hyperparameters.json").write_text(json.dumps({k: json.dumps(v) for k, v in hyper.items()}))
    (base / "input/config/resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    (base / "input/config/inputdataconfig.json").write_text("{}")
    env = {**codeartifact.env(), **CREDS, "AWS_ENDPOINT_URL_S3": endpoint, "TRAINING_JOB_NAME": "job-tls",
           "SMC_LOG_FORMAT": "json"}
    mounts = [a for sub in ("input", "model", "output", "code") for a in ("-v", f"{base / sub}:/opt/ml/{sub}")]

    done = run_in_container(base_image, smc_binary, pki["ca"], RHEL_BUNDLE, "train", env=env, mounts=mounts)

    failure = base / "output" / "failure"
    assert done.returncode == 0, (failure.read_text() if failure.exists() else "") + done.stdout[-3000:] + done.stderr[-2000:]
    assert "trained with from codeartifact over tls" in done.stdout
    uploaded = client.get_object(Bucket="bucket", Key="out/job-tls/output/intermediate/ckpt.txt")["Body"].read()
    assert uploaded == b"step 1 from codeartifact over tls"
    assert ("POST", "/v1/authorization-token", 200) in codeartifact.calls


FETCH = """
import ssl, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=30) as answer:
    print("status", answer.status, ssl.get_default_verify_paths().openssl_cafile_env)
"""


@pytest.mark.parametrize("ca_path", [
    RHEL_BUNDLE,                                           # RHEL/UBI, CentOS, Fedora, Amazon Linux
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # RHEL's extracted bundle alone
    "/etc/ssl/ca-bundle.pem",                              # SUSE
])
def test_smc_python_urllib_trusts_the_distribution_bundle(base_image, smc_binary, pki, s3, ca_path):
    endpoint, client = s3
    client.create_bucket(Bucket="probe")
    done = run_in_container(base_image, smc_binary, pki["ca"], ca_path, "python", "-c", FETCH, f"{endpoint}/probe")
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "status 200" in done.stdout


ENV_SH = """#!/bin/sh
echo "SSL_CERT_FILE=[${SSL_CERT_FILE-unset}] marks=[$(env | grep -c '^_SMC_')]"
"""


@pytest.mark.parametrize("users_file", [None, "/opt/ml/code/mine.pem"])
def test_programs_other_than_smc_see_the_environment_the_user_set(base_image, smc_binary, pki, users_file, tmp_path):
    """A shell entry point is the image's program: smc's own SSL_CERT_FILE never reaches it, a
    user's own does."""
    base = tmp_path / "ml"
    for sub in ("input/config", "input/data", "model", "output", "code"):
        (base / sub).mkdir(parents=True)
    (base / "code" / "train.sh").write_text(ENV_SH)
    (base / "code" / "train.sh").chmod(0o755)
    (base / "input/config/hyperparameters.json").write_text(json.dumps({"sagemaker_program": '"train.sh"'}))
    (base / "input/config/resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    mounts = [a for sub in ("input", "model", "output", "code") for a in ("-v", f"{base / sub}:/opt/ml/{sub}")]
    env = {"SSL_CERT_FILE": users_file} if users_file else {}
    done = run_in_container(base_image, smc_binary, pki["ca"], RHEL_BUNDLE, "train", env=env, mounts=mounts)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"SSL_CERT_FILE=[{users_file or 'unset'}] marks=[0]" in done.stdout
