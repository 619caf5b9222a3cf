"""Images of several Debian releases (build/images.sh distros: debootstrap + python3 + nginx-light,
no smc), each with the binary under test and code/ as /opt/ml/code, built once per binary.

The exported root file systems of those images are for the faults Docker cannot make (it always
mounts /proc and writes /etc/hosts): the tests chroot into them inside new namespaces.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.images.conftest import docker
from tests.train.distributed.dockercluster import build_derived

# suite -> the image's own python3 (major.minor); glibc: bullseye 2.31, bookworm 2.36, trixie 2.41.
DISTROS = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}
CODE = Path(__file__).parent / "code"
BUILD_TIMEOUT_S = 900
DOCKERFILE = """\
FROM {base}
LABEL smc.test.base-id={base_id}
COPY smc /usr/local/bin/smc
COPY report.py hosts.py inference.py /opt/ml/code/
ENTRYPOINT ["smc"]
"""
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="session")
def distro_bases(docker_engine, smc_binary: Path) -> None:
    """smc-distro-<suite>:latest, as `make images` builds them (cached: seconds when current)."""
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(ROOT / "build" / "images.sh"), "distros"],
        env={**os.environ, "SMC_BINARY": str(smc_binary)},
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(
            f"build/images.sh distros failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    print(f"\ndistribution images ready in {time.monotonic() - started:.0f} s:\n{result.stdout}")


@pytest.fixture(scope="session")
def distro_images(distro_bases, smc_binary: Path):
    """image(suite) -> the tag of smc-distro-<suite>:latest plus smc and code/ (built once per binary)."""
    built: dict[str, str] = {}

    def image(suite: str) -> str:
        if suite not in built:
            base = f"smc-distro-{suite}:latest"
            base_id = docker("image", "inspect", "-f", "{{.Id}}", base, check=True).stdout.strip()
            dockerfile = DOCKERFILE.replace("{base_id}", base_id)
            files = {"smc": smc_binary, **{p.name: p for p in sorted(CODE.glob("*.py"))}}
            built[suite] = build_derived(base, f"smc-distro-test-{suite}", dockerfile, files)
        return built[suite]

    return image


@pytest.fixture(params=list(DISTROS))
def distro(request) -> str:
    return request.param


@pytest.fixture
def image(distro_images, distro: str) -> str:
    return distro_images(distro)


@pytest.fixture(scope="session")
def distro_roots(distro_images, tmp_path_factory):
    """root(suite) -> the exported root file system of image(suite), with no /etc/hosts (Docker's
    export has an empty placeholder) and empty /opt/ml/{input,model,output} to bind jobs onto."""
    if os.geteuid() != 0:
        pytest.fail("the chroot fault tests need root (chroot, unshare, mount); CI runs as root")
    for tool in ("unshare", "chroot", "ip"):
        if shutil.which(tool) is None:
            pytest.fail(
                f"{tool} missing: apt-get install util-linux coreutils iproute2 (build/system-deps.sh test)"
            )
    exported: dict[str, Path] = {}

    def root(suite: str) -> Path:
        if suite not in exported:
            path = tmp_path_factory.mktemp(f"root-{suite}")
            created = docker("create", distro_images(suite), check=True).stdout.strip()
            try:
                with subprocess.Popen(["docker", "export", created], stdout=subprocess.PIPE) as export:
                    subprocess.run(
                        ["tar", "-C", str(path), "-x"], stdin=export.stdout, check=True, timeout=300
                    )
                assert export.returncode == 0, f"docker export of {suite} failed"
            finally:
                docker("rm", "-f", created)
            # The root of the chroot: pytest makes its dirs 0700, and nginx's user must enter it.
            path.chmod(0o755)
            (path / "etc" / "hosts").unlink()
            for sub in ("input", "model", "output"):
                (path / "opt" / "ml" / sub).mkdir(parents=True, exist_ok=True)
            exported[suite] = path
        return exported[suite]

    yield root
    for path in exported.values():  # ~150 MB each: not kept with pytest's last three temp dirs
        shutil.rmtree(path, ignore_errors=True)


def chrooted(
    root: Path,
    argv: list[str],
    env: dict[str, str] | None = None,
    *,
    mount_proc: bool,
    job: Path | None = None,
    shell: str = "exec {command}",
    timeout_s: float = 120,
) -> subprocess.CompletedProcess:
    """Run argv chrooted into root in new pid, net and mount namespaces (loopback up); /proc is
    mounted in the root only with mount_proc; job's input, model and output are bound onto
    /opt/ml. `shell` is the bash (outside the chroot) that runs {command}, the chrooted argv."""
    lines = ["set -e", "ip link set lo up"]
    if job is not None:
        lines += [
            f"mount --bind {shlex.quote(str(job / sub))} {shlex.quote(str(root / 'opt/ml' / sub))}"
            for sub in ("input", "model", "output")
        ]
    env_args = " ".join(shlex.quote(f"{k}={v}") for k, v in {"PATH": PATH, **(env or {})}.items())
    command = f"env -i {env_args} chroot {shlex.quote(str(root))} {shlex.join(argv)}"
    lines.append(shell.replace("{command}", command))
    unshare = ["unshare", "--pid", "--fork", "--net", "--mount"]
    if mount_proc:
        unshare.append(f"--mount-proc={root / 'proc'}")
    return subprocess.run(
        [*unshare, "bash", "-c", "\n".join(lines)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def write_job(base: Path, hosts: tuple[str, ...] = ("algo-1",), hyperparameters: dict | None = None) -> Path:
    """A one-channel-less /opt/ml tree for hosts[0], world-writable for any user in the container."""
    config = base / "input" / "config"
    for path in (config, base / "input" / "data", base / "model", base / "output"):
        path.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters or {}))
    (config / "inputdataconfig.json").write_text("{}")
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": hosts[0], "hosts": list(hosts)}))
    for path in [base, *base.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    return base


def model_dir(base: Path) -> Path:
    """/opt/ml/model for serving: code/inference.py, the doubling handler."""
    (base / "code").mkdir(parents=True, exist_ok=True)
    shutil.copy(CODE / "inference.py", base / "code" / "inference.py")
    return base


def explain(result: subprocess.CompletedProcess) -> str:
    """What a failed run printed: the whole story of a container or chroot that did not start."""
    return f"exit code {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"

