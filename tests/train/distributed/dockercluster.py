"""A SageMaker-like cluster on the local Docker Engine: a private network made for the test and
containers algo-1..N that each run `smc train` with their own /opt/ml tree (bind mounts).

Names are unique per cluster (smc-mpi-<id>-algo-N on network smc-mpi-<id>) and removed by name.
The image is examples/mpi built with dist/smc, tagged by a content key so it is built once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "mpi"
IMAGE_REPO = "smc-mpi-test"
BUILD_TIMEOUT_S = 900


def docker(*args: str, timeout: float = 120, check: bool = False, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=check, **kw
    )


def require_docker() -> str | None:
    """None when the Engine answers, else what is wrong (the caller fails, never skips)."""
    if shutil.which("docker") is None:
        return "distributed cluster tests need the Docker CLI and Engine: apt-get install -y docker.io"
    info = docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    if info.returncode != 0:
        return f"the Docker Engine does not answer (`docker info`: {info.stderr.strip()}); start dockerd"
    return None


def content_key(smc_binary: Path, dockerfile: str = "Dockerfile", extra: bytes = b"") -> str:
    digest = hashlib.sha256(extra)
    for path in sorted(EXAMPLE.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(EXAMPLE).as_posix().encode() + b"\0" + path.read_bytes())
    digest.update(smc_binary.read_bytes())
    return digest.hexdigest()[:12]


def ensure_base_image() -> str:
    """smc-base:latest from build/base-image.sh (instant when current); its id, for the content key."""
    script = EXAMPLE.parent.parent / "build" / "base-image.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"build/base-image.sh failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return docker("image", "inspect", "-f", "{{.Id}}", "smc-base:latest").stdout.strip()


def build_image(
    smc_binary: Path, dockerfile: str = "Dockerfile", repo: str = IMAGE_REPO, extra_files=()
) -> str:
    """The example image with this smc, built once per content key; older keys are removed."""
    base_id = ensure_base_image()
    extra = b"".join(Path(f).read_bytes() for f in extra_files) + base_id.encode()
    tag = f"{repo}:{content_key(smc_binary, dockerfile, extra + dockerfile.encode())}"

    def fill(context: Path) -> None:
        shutil.copytree(EXAMPLE, context, dirs_exist_ok=True)
        shutil.copy(smc_binary, context / "smc")
        for f in extra_files:
            shutil.copy(f, context / Path(f).name)

    return _build_once(tag, repo, fill, dockerfile)


@dataclass
class Host:
    name: str
    container: str
    base: Path  # this host's /opt/ml

    def failure(self) -> str:
        path = self.base / "output" / "failure"
        return path.read_text() if path.exists() else ""


@dataclass
class Cluster:
    image: str
    root: Path
    size: int = 2
    ident: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    hosts: list[Host] = field(default_factory=list)
    started_at: float = 0.0
    entrypoint: str | None = None  # the image's own when None
    # SageMaker's containers answer gethostname() with an EC2-style name, not algo-N.
    ec2_hostnames: bool = False

    @property
    def network(self) -> str:
        return f"smc-mpi-{self.ident}"

    def __enter__(self) -> Self:
        docker("network", "create", self.network, check=True)
        return self

    def __exit__(self, *exc) -> None:
        names = [h.container for h in self.hosts]
        if names:
            docker("rm", "-f", *names, timeout=60)
        docker("network", "rm", self.network, timeout=60)

    def start(
        self,
        hyperparameters: dict,
        env: dict | None = None,
        only: list[str] | None = None,
        host_env: dict[str, dict] | None = None,
    ) -> None:
        """Start every host of the job, or `only` some of them (the others never come);
        `host_env` adds variables for some hosts."""
        names = [f"algo-{i + 1}" for i in range(self.size)]
        for name in only or names:
            base = self.root / name
            for sub in ("input/config", "input/data", "model", "output"):
                (base / sub).mkdir(parents=True, exist_ok=True)
            config = base / "input" / "config"
            (config / "resourceconfig.json").write_text(json.dumps({"current_host": name, "hosts": names}))
            (config / "hyperparameters.json").write_text(
                json.dumps({k: json.dumps(v) for k, v in hyperparameters.items()})
            )
            (config / "inputdataconfig.json").write_text("{}")
            self.hosts.append(Host(name, f"{self.network}-{name}", base))
        self.started_at = time.time()
        for host in self.hosts:
            hostname = f"ip-10-0-0-{host.name.rsplit('-', 1)[1]}" if self.ec2_hostnames else host.name
            argv = ["run", "-d", "--name", host.container, "--hostname", hostname, "--network", self.network,
                    "--network-alias", host.name, "-e", f"TRAINING_JOB_NAME=job-{self.ident}"]  # fmt: skip
            if self.entrypoint:
                argv += ["--entrypoint", self.entrypoint]
            for key, value in {**(env or {}), **(host_env or {}).get(host.name, {})}.items():
                argv += ["-e", f"{key}={value}"]
            for sub in ("input", "model", "output"):
                argv += ["-v", f"{host.base / sub}:/opt/ml/{sub}"]
            docker(*argv, self.image, "train", check=True)

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def wait(self, timeout_s: float) -> dict[str, int]:
        """Exit code of every container; fails the test (AssertionError) on a hang."""
        deadline = time.monotonic() + timeout_s
        codes: dict[str, int] = {}
        for host in self.hosts:
            left = max(1.0, deadline - time.monotonic())
            try:
                done = docker("wait", host.container, timeout=left)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"{host.name} still runs after {timeout_s:g} s:\n{self.logs(host.name)[-3000:]}"
                ) from None
            codes[host.name] = int(done.stdout.strip())
        return codes

    def docker_kill(self, name: str) -> None:
        docker("kill", self.host(name).container, check=True)

    def docker_stop(self, name: str, grace_s: int) -> None:
        docker("stop", "-t", str(grace_s), self.host(name).container, timeout=grace_s + 30, check=True)

    def logs(self, name: str) -> str:
        done = docker("logs", self.host(name).container, timeout=60)
        return done.stdout + done.stderr

    def wait_for_log(self, name: str, text: str, timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.logs(name):
                return time.time()
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared in {name}'s log:\n{self.logs(name)[-3000:]}")


def build_derived(base: str, repo: str, dockerfile: str, files: dict[str, Path]) -> str:
    """An image FROM `base` (given as `FROM {base}` in dockerfile), with `files` in its context;
    tagged by the content of all of it and built once."""
    digest = hashlib.sha256(base.encode() + dockerfile.encode())
    for name, path in sorted(files.items()):
        digest.update(name.encode() + b"\0" + path.read_bytes())
    tag = f"{repo}:{digest.hexdigest()[:12]}"

    def fill(context: Path) -> None:
        (context / "Dockerfile").write_text(dockerfile.format(base=base))
        for name, path in files.items():
            shutil.copy(path, context / name)

    return _build_once(tag, repo, fill)


def _build_once(tag: str, repo: str, fill, dockerfile: str = "Dockerfile") -> str:
    """Build `tag` from a context that fill(context_dir) writes, unless it exists; drop older tags of repo."""
    if docker("image", "inspect", tag).returncode != 0:
        with tempfile.TemporaryDirectory(prefix="smc-mpi-build-", dir="/var/tmp") as context:
            fill(Path(context))
            done = docker(
                "build", "-q", "-f", f"{context}/{dockerfile}", "-t", tag, context, timeout=BUILD_TIMEOUT_S
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"docker build of {tag} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
                )
    for line in docker("images", repo, "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
        if line != tag:
            docker("rmi", line)
    return tag
