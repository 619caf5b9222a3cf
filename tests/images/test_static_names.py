"""Name resolution of dist/smc-static (staticx: its own glibc, from the build machine) in roots of
other glibc versions: a Debian 11 root (glibc 2.31) and today's base (Debian 12).

Why it can work at all: staticx links its `libnssfix` into the program, which fixes the hosts
database to `files dns` (the image's nsswitch.conf hosts line is not read) and bundles the build
machine's libnss_files/libnss_dns; from glibc 2.34 on both services are inside libc.so.6. So no
NSS module of the image's glibc, which the bundled glibc could not load, is ever opened. These
tests hold that: a name from /etc/hosts, a name only Docker's DNS knows (the `dns` service of the
image's nsswitch.conf), a two-host job's wait for its peers, and no libnss_* from the image.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.images.conftest import docker

pytestmark = pytest.mark.docker

# (image, how build/base-image.sh makes it): bookworm is smc-base itself; bullseye has python3 so
# the image's own interpreter can run the two-host job's script.
ROOTS = {
    "bookworm": ("smc-base:latest", []),
    "bullseye": ("smc-distro-bullseye:latest", ["bullseye", "nginx-light,python3", "smc-distro-bullseye:latest"]),
}

RESOLVE = """
import socket, sys
for name in sys.argv[1:]:
    print(name, socket.gethostbyname(name), sorted({a[4][0] for a in socket.getaddrinfo(name, 80)}))
"""


@pytest.fixture(scope="session")
def static_binary() -> Path:
    """dist/smc-static: SMC_STATIC_BINARY, or built by build/static-binary.sh (cached)."""
    given = os.environ.get("SMC_STATIC_BINARY")
    if given:
        return Path(given).resolve()
    subprocess.run(["bash", str(ROOT / "build" / "static-binary.sh")], check=True, capture_output=True, timeout=1200)
    return ROOT / "dist" / "smc-static"


@pytest.fixture(scope="module", params=sorted(ROOTS))
def root_image(request, docker_engine) -> str:
    image, args = ROOTS[request.param]
    built = subprocess.run(["bash", str(ROOT / "build" / "base-image.sh"), *args], capture_output=True, text=True,
                           timeout=900, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    return image


def smc_static(image: str, binary: Path, *args: str, docker_args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return docker("run", "--rm", "-v", f"{binary}:/usr/local/bin/smc:ro", *docker_args, image, "smc", *args,
                  timeout=180)


@pytest.fixture
def network():
    name = f"smc-e2e-names-{uuid.uuid4().hex[:8]}"
    assert docker("network", "create", name).returncode == 0
    try:
        yield name
    finally:
        docker("network", "rm", name)


@pytest.fixture
def peer(root_image, network):
    """A container that only Docker's DNS on `network` knows as algo-2 (not in anyone's /etc/hosts)."""
    name = f"smc-e2e-peer-{uuid.uuid4().hex[:8]}"
    started = docker("run", "-d", "--rm", "--name", name, "--network", network, "--network-alias", "algo-2",
                     root_image, "sleep", "120")
    assert started.returncode == 0, started.stderr
    address = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name).stdout.strip()
    try:
        yield address
    finally:
        docker("rm", "-f", name)


def test_names_from_etc_hosts(root_image, static_binary):
    done = smc_static(root_image, static_binary, "python", "-c", RESOLVE, "algo-1", "localhost", "algo-3",
                      docker_args=("--hostname", "algo-3", "--add-host", "algo-1:10.11.12.13"))
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "algo-1 10.11.12.13 ['10.11.12.13']" in done.stdout
    assert "localhost 127.0.0.1" in done.stdout
    assert "algo-3 " in done.stdout  # the container's own name, which Docker writes into /etc/hosts


def test_names_from_docker_dns(root_image, static_binary, network, peer):
    done = smc_static(root_image, static_binary, "python", "-c", RESOLVE, "algo-2", docker_args=("--network", network))
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert f"algo-2 {peer} ['{peer}']" in done.stdout


def test_no_nss_module_of_the_image_is_loaded(root_image, static_binary):
    """LD_DEBUG of the bundled loader: every libnss_* comes from staticx's own folder."""
    done = smc_static(root_image, static_binary, "python", "-c", RESOLVE, "algo-1",
                      docker_args=("--add-host", "algo-1:10.11.12.13", "-e", "LD_DEBUG=libs"))
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    opened = {line.split("calling init: ")[1].strip() for line in done.stderr.splitlines() if "calling init: " in line}
    nss = {path for path in opened if "/libnss_" in path}
    assert nss, "LD_DEBUG listed no NSS module: the check would prove nothing"
    assert all(path.startswith("/tmp/staticx-") for path in nss), sorted(nss)


TRAIN_PY = """
import socket
print("peer", socket.gethostbyname("algo-2"), flush=True)
"""


def test_two_host_job_waits_for_and_reaches_its_peer(root_image, static_binary, network, peer, tmp_path):
    """smc's wait for the job's hosts (train/cluster.py) resolves both names, and the entry point
    (the embedded interpreter; the image's python3 where there is one) does too."""
    base = tmp_path / "ml"
    for sub in ("input/config", "input/data", "model", "output", "code"):
        (base / sub).mkdir(parents=True)
    (base / "code" / "train.py").write_text(TRAIN_PY)
    (base / "input/config/hyperparameters.json").write_text(json.dumps({"sagemaker_program": '"train.py"'}))
    (base / "input/config/resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]}))
    mounts = [a for sub in ("input", "model", "output", "code") for a in ("-v", f"{base / sub}:/opt/ml/{sub}")]
    done = smc_static(root_image, static_binary, "train", docker_args=(
        "--network", network, "--hostname", "algo-1", "-e", "SMC_LOG_FORMAT=json", *mounts))
    failure = base / "output" / "failure"
    assert done.returncode == 0, (failure.read_text() if failure.exists() else "") + done.stdout[-3000:]
    assert f"peer {peer}" in done.stdout
