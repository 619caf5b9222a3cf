"""`smc doctor --image IMAGE`, run on the host before a push: what only the image's own metadata
shows (ENTRYPOINT form, SageMaker's capability labels), then the in-image checks, by running
`smc doctor --json` inside a throwaway container of that image."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from supervisor_app import process
from supervisor_app.doctor.findings import Finding, fail, ok, warn
from supervisor_app.doctor.labels import BIND_TO_PORT_LABEL, MULTI_MODEL_LABEL

_DOCKER_TIMEOUT_S = 120.0
# uname -m of a Linux binary -> Docker's (OCI's) name for the same architecture.
_DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
# The binary to COPY into an image of each Docker architecture (`make binary [ARCH=aarch64]`).
_BINARY_FOR = {"amd64": "dist/smc (make binary)", "arm64": "dist/smc-aarch64 (make binary ARCH=aarch64)"}


def check_image(image: str, modes: set[str], environ: Mapping[str, str]) -> list[Finding]:
    docker = shutil.which("docker", path=environ.get("PATH"))
    if docker is None:
        return [fail("image", "docker not found on PATH", "install the Docker CLI, or run `smc doctor` inside the image")]
    env = process.foreign_env(environ)
    # One call for both: the config (entrypoint, labels, env) and the architecture it was built for.
    inspected = _run([docker, "image", "inspect", "--format", '{"config": {{json .Config}}, "architecture": '
                      '{{json .Architecture}}}', image], env)
    if inspected.returncode != 0:
        return [
            fail(
                "image",
                f"docker cannot inspect {image}: {inspected.stderr.strip()}",
                "build or tag the image first (docker build -t NAME .), then pass that NAME",
            )
        ]
    described: dict[str, Any] = json.loads(inspected.stdout or "{}") or {}
    config: dict[str, Any] = described.get("config") or {}
    findings = [check_entrypoint(config), *check_labels(config)]
    entrypoint = config.get("Entrypoint") or []
    smc_path = entrypoint[0] if entrypoint and "smc" in entrypoint[0].rsplit("/", 1)[-1] else "smc"
    inside, inside_machine = _inside(docker, image, smc_path, modes, env)
    image_arch = str(described.get("architecture") or "")
    if inside_machine:
        architecture = check_architecture(image_arch, inside_machine, "its smc")
    else:
        # The image's smc did not run (or is older than the "machine" field): this smc stands in.
        standing_in = "this smc (the image's did not report its own)"
        architecture = check_architecture(image_arch, platform.machine(), standing_in)
    return [architecture, *findings, *inside]


def check_architecture(image_arch: str, binary_machine: str, binary: str = "this smc") -> Finding:
    """The image's architecture (Docker's name: amd64, arm64) against an smc's (uname -m: x86_64,
    aarch64): the image's own smc as it reported itself when it ran (under qemu-user when the host
    differs), else the one checking. An x86_64 smc in an arm64 image fails to start on Graviton
    (exec format error)."""
    binary_arch = _DOCKER_ARCH.get(binary_machine, binary_machine)
    if not image_arch:
        return warn("architecture", "docker reports no architecture for the image", "")
    if image_arch == binary_arch:
        return ok("architecture", f"image linux/{image_arch}, {binary} {binary_machine}")
    wanted = _BINARY_FOR.get(image_arch)
    if wanted is None:
        hint = ("smc ships for linux/amd64 and linux/arm64 only: build the image with "
                f"--platform linux/{binary_arch}")
    else:
        hint = (f"COPY {wanted} into this linux/{image_arch} image, or build the image for this binary "
                f"with docker build --platform linux/{binary_arch}")
    return fail(
        "architecture",
        f"the image is linux/{image_arch} but {binary} is {binary_machine} (linux/{binary_arch}): "
        "an image must carry the smc built for its own architecture",
        hint,
    )


def check_entrypoint(config: Mapping[str, Any]) -> Finding:
    entrypoint = config.get("Entrypoint") or []
    if not entrypoint:
        return fail(
            "entrypoint",
            "the image has no ENTRYPOINT; SageMaker runs `docker run IMAGE train|serve`",
            'add ENTRYPOINT ["smc"] to the Dockerfile',
        )
    if entrypoint[:2] == ["/bin/sh", "-c"]:
        return fail(
            "entrypoint",
            f"ENTRYPOINT is in shell form ({entrypoint[2] if len(entrypoint) > 2 else ''!r}): the shell "
            "drops the `train`/`serve` argument and SIGTERM never reaches smc",
            'use the exec form: ENTRYPOINT ["smc"]',
        )
    if "smc" not in entrypoint[0].rsplit("/", 1)[-1]:
        return warn(
            "entrypoint",
            f"ENTRYPOINT is {entrypoint}, not smc",
            'ENTRYPOINT ["smc"] lets SageMaker\'s `train` and `serve` reach smc directly',
        )
    return ok("entrypoint", f"ENTRYPOINT {json.dumps(entrypoint)} (exec form)")


def check_labels(config: Mapping[str, Any]) -> list[Finding]:
    labels = config.get("Labels") or {}
    findings = []
    if str(labels.get(BIND_TO_PORT_LABEL, "")).lower() == "true":
        findings.append(ok("label_bind_to_port", f"{BIND_TO_PORT_LABEL}=true: usable in inference pipelines"))
    else:
        findings.append(
            warn(
                "label_bind_to_port",
                f"no {BIND_TO_PORT_LABEL}=true label: SageMaker refuses the image in inference pipelines and "
                "multi-container endpoints (smc itself honours SAGEMAKER_BIND_TO_PORT)",
                f"add LABEL {BIND_TO_PORT_LABEL}=true to the Dockerfile",
            )
        )
    findings += check_multi_model_agreement(labels, config.get("Env") or [])
    return findings


def check_multi_model_agreement(labels: Mapping[str, Any], env: list[str]) -> list[Finding]:
    """The multi-models label and SAGEMAKER_MULTI_MODEL in the image's ENV must agree."""
    label = str(labels.get(MULTI_MODEL_LABEL, "")).lower() == "true"
    values = [item.split("=", 1)[1] for item in env if item.startswith("SAGEMAKER_MULTI_MODEL=")]
    enabled = bool(values) and values[-1].strip().lower() in ("1", "true", "yes", "on")
    if label and enabled:
        return [ok("multi_model", f"{MULTI_MODEL_LABEL}=true and ENV SAGEMAKER_MULTI_MODEL=true: smc serve offers "
                                  "the /models API")]
    if enabled:
        return [fail(
            "multi_model",
            f"ENV SAGEMAKER_MULTI_MODEL=true without LABEL {MULTI_MODEL_LABEL}=true: SageMaker refuses the image for "
            "multi-model endpoints, and as a single-model endpoint it would offer /models instead of /invocations",
            f"add LABEL {MULTI_MODEL_LABEL}=true, or drop ENV SAGEMAKER_MULTI_MODEL",
        )]
    if label:
        return [warn(
            "multi_model",
            f"{MULTI_MODEL_LABEL}=true but the image's ENV lacks SAGEMAKER_MULTI_MODEL=true: smc serve offers the "
            "/models API only when that variable is true",
            "add ENV SAGEMAKER_MULTI_MODEL=true to the Dockerfile (the label alone does not switch smc to multi-model)",
        )]
    return []


def _inside(
    docker: str, image: str, smc_path: str, modes: set[str], env: dict[str, str]
) -> tuple[list[Finding], str]:
    """The in-image findings, and the machine the image's smc reported ("" when it did not run)."""
    argv = [docker, "run", "--rm", "--entrypoint", smc_path, image, "doctor", "--json", *sorted(modes)]
    result = _run(argv, env)
    try:
        report = json.loads(result.stdout)
        findings = [Finding(**{"hint": "", "path": "", **f}) for f in report["findings"]]
        return findings, str(report.get("machine") or "")
    except (ValueError, KeyError, TypeError):
        tail = (result.stderr or result.stdout).strip()[-500:]
        return [
            fail(
                "in_image",
                f"`smc doctor` could not run inside {image} (exit {result.returncode}): {tail}",
                "COPY the smc binary into the image (e.g. /usr/local/bin/smc) and keep /tmp writable and exec; "
                "`exec format error`: the binary is for another architecture (see the architecture check), "
                "or the image is and this host cannot run it (install qemu-user-static and binfmt-support)",
            )
        ], ""


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=_DOCKER_TIMEOUT_S, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 1, "", str(exc))
