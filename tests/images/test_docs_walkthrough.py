"""A newcomer's walk through the docs (issue 24, "Done when"): the images a new user built from
README.md and docs/ alone, built here from what the docs show (the Dockerfile and every file shown
in full replace the example directory's own; the rest of the directory, e.g. the MME example's
models, is what the docs point at), then run: `smc version`, `smc doctor --image` on each and on a
broken variant of two, and for each image that serves, /ping and an answer. Docker's layer cache
keeps a warm run to a few minutes: the context only changes when the docs or the binary do.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.images.conftest import BUILD_TIMEOUT_S, docker, json_events
from tests.images.docs_examples import WALKTHROUGH, shown_under
from tests.serve.streamclient import stream

CACHE_DIR = Path(os.environ.get("CACHE_DIR", Path.home() / ".cache" / "smc"))
# The pip download of build/images.sh (wheels_for), so both share one cache of wheels.
WHEEL_TARGET = ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi", "abi3",
                "--abi", "none", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
                "--platform", "any"]


def image_of(name: str) -> str:
    return f"smc-walkthrough-{name}:test"


def wheels_for(requirements: Path) -> Path:
    dest = CACHE_DIR / f"wheels-{hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]}"
    if not (dest / ".ok").exists():
        result = subprocess.run(["python3", "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                                 "--only-binary=:all:", *WHEEL_TARGET, "-r", str(requirements), "-d", str(dest)],
                                capture_output=True, text=True, timeout=600, check=False)
        assert result.returncode == 0, f"pip download of {requirements.name}'s wheels failed:\n{result.stderr[-2000:]}"
        (dest / ".ok").touch()
    return dest


def context_from_docs(name: str, smc_binary: Path, staging: Path) -> Path:
    directory = WALKTHROUGH[name]
    shown = shown_under(directory)
    assert "Dockerfile" in shown, f"docs/ shows no Dockerfile for {directory} (`<!-- example:{directory}/Dockerfile -->`)"
    context = staging / name
    shutil.copytree(ROOT / directory, context, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for relative, text in shown.items():
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        (context / relative).write_text(text)
    shutil.copy(smc_binary, context / "smc")
    if (context / "requirements.txt").exists():
        (context / "wheels").mkdir()
        for wheel in wheels_for(context / "requirements.txt").glob("*.whl"):
            shutil.copy(wheel, context / "wheels" / wheel.name)
    return context


def build(context: Path, image: str) -> None:
    previous = docker("image", "inspect", "-f", "{{.Id}}", image).stdout.strip()
    result = docker("build", "-t", image, str(context), timeout=BUILD_TIMEOUT_S)
    assert result.returncode == 0, f"docker build of {image} from the docs failed:\n{result.stderr[-4000:]}"
    current = docker("image", "inspect", "-f", "{{.Id}}", image).stdout.strip()
    if previous and previous != current:
        docker("image", "rm", previous)  # our own old build, now untagged (kept when a container uses it)


@pytest.fixture(scope="session")
def walkthrough(docker_engine, smc_binary, tmp_path_factory) -> dict[str, str]:
    base = subprocess.run(["bash", str(ROOT / "build" / "base-image.sh")], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S, check=False)
    assert base.returncode == 0, f"build/base-image.sh failed:\n{base.stderr[-3000:]}"
    staging = tmp_path_factory.mktemp("walkthrough")
    started = time.monotonic()
    for name in WALKTHROUGH:
        build(context_from_docs(name, smc_binary, staging), image_of(name))
    print(f"\nwalk-through images built from the docs in {time.monotonic() - started:.0f} s")
    return {name: image_of(name) for name in WALKTHROUGH}


def call(port: int, method: str, path: str, body: object = None, content_type: str = "application/json",
         timeout_s: float = 30) -> tuple[int, object]:
    data = None if body is None else (body if isinstance(body, str) else json.dumps(body)).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def sse_tokens(body: bytes) -> list[str]:
    return [json.loads(event[len(b"data: "):])["token"] for event in body.split(b"\n\n") if event]


# -- every image: version and doctor ----------------------------------------------------------------

@pytest.mark.parametrize("name", list(WALKTHROUGH))
def test_version_and_doctor_pass_in_each_image(walkthrough, smc_binary, name):
    image = walkthrough[name]
    version = docker("run", "--rm", image, "version", timeout=60)
    assert version.returncode == 0 and version.stdout.strip(), version.stderr
    doctor = subprocess.run([str(smc_binary), "doctor", "--image", image, "--json"], capture_output=True,
                            text=True, timeout=180, check=False)
    report = json.loads(doctor.stdout)
    failing = [f for f in report["findings"] if f["status"] == "fail"]
    assert doctor.returncode == 0 and not failing, failing or doctor.stderr


# A line a newcomer gets wrong, on top of a good image: doctor must fail there, as serve would.
BROKEN = {
    "fastapi": ("ENV SMC_ASGI_APP=main:ap", "no attribute 'ap'"),  # main.py is there; its app is `app`
    "tiny-engine": ('ENV SMC_ENGINE_COMMAND="smc python /opt/engine/engin.py --port 8000"',
                    "/opt/engine/engin.py, which does not exist"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_doctor_fails_a_broken_variant_and_names_the_mistake(walkthrough, smc_binary, tmp_path, name):
    line, named = BROKEN[name]
    (tmp_path / "Dockerfile").write_text(f"FROM {walkthrough[name]}\n{line}\n")
    broken = f"smc-walkthrough-{name}-broken:test"
    build(tmp_path, broken)
    doctor = subprocess.run([str(smc_binary), "doctor", "--image", broken, "--json"], capture_output=True,
                            text=True, timeout=180, check=False)
    failing = [f for f in json.loads(doctor.stdout)["findings"] if f["status"] == "fail"]
    assert doctor.returncode == 1 and failing, doctor.stdout
    assert any(named in f["message"] for f in failing), failing


# -- the images that serve ------------------------------------------------------------------------

def test_fastapi_image_streams_server_sent_events(walkthrough, containers):
    result, box = containers(walkthrough["fastapi"], "serve", detach=True, publish=True)
    assert result.returncode == 0, result.stderr
    box.wait_ready()
    answer = stream(box.port, {"prompt": "hi"}, timeout=30)
    assert answer.status == 200 and answer.complete, answer
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert sse_tokens(answer.body) == ["tokens", "arrive", "one", "by", "one"]
    arrivals = [at for at, _ in answer.chunks]
    assert arrivals[-1] - arrivals[0] > 0.1  # as produced (0.05 s apart), not in one piece at the end


def test_streaming_handler_image_streams_each_word(walkthrough, containers, tmp_path):
    model = tmp_path / "model"
    model.mkdir(mode=0o777)
    result, box = containers(walkthrough["streaming"], "serve", detach=True, publish=True,
                             docker_args=["-v", f"{model}:/opt/ml/model"])
    assert result.returncode == 0, result.stderr
    box.wait_ready()
    answer = stream(box.port, {"prompt": "one two three"}, timeout=30)
    assert answer.status == 200 and answer.complete, answer
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert sse_tokens(answer.body) == ["one", "two", "three"]


def test_mme_image_loads_and_invokes_a_model(walkthrough, containers, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(ROOT / "examples" / "mme" / "models", models)
    for path in [models, *models.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    result, box = containers(walkthrough["mme"], "serve", detach=True, publish=True,
                             docker_args=["-v", f"{models}:/opt/ml/models:ro"])
    assert result.returncode == 0, result.stderr
    box.wait_ready()
    status, body = call(box.port, "POST", "/models", {"model_name": "linear", "url": "/opt/ml/models/linear/model"})
    assert status == 200, body
    status, body = call(box.port, "POST", "/models/linear/invoke", {"instances": [[1, 2, 3]]})
    assert status == 200 and body == {"predictions": [pytest.approx(0.5 - 2.5 + 6.0 + 0.1)]}


def test_tiny_engine_image_answers_and_comes_back_after_a_kill_under_load(walkthrough, containers):
    result, box = containers(walkthrough["tiny-engine"], "serve", detach=True, publish=True)
    assert result.returncode == 0, result.stderr
    box.wait_ready()
    assert call(box.port, "POST", "/invocations", {"features": [1, 2, 3]}) == (200, {"score": 4.5})
    healthy = [e for e in json_events(box.logs()) if e.get("event") == "engine_healthy"]
    serving_pid = healthy[0].get("serving_pid") or healthy[0]["child_pid"]
    answers: list[object] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                answers.append(call(box.port, "POST", "/invocations", {"features": [1, 1, 1]}, timeout_s=10)[0])
            except (OSError, ValueError) as exc:  # ValueError: an answer that is not JSON
                answers.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    kill = docker("exec", box.name, "sh", "-c", f"kill -9 {serving_pid}", timeout=30)
    assert kill.returncode == 0, kill.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        events = json_events(box.logs())
        if len([e for e in events if e.get("event") == "engine_healthy"]) >= 2:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"the engine did not come back after kill -9:\n{box.logs()[-4000:]}")
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    # Under load through the kill: answers, or smc's JSON 502/503 while the engine restarts.
    assert answers and set(answers) <= {200, 502, 503}, sorted(set(map(str, answers)))
    assert answers.count(200) > 10
    assert call(box.port, "POST", "/invocations", {"features": [1, 2, 3]}) == (200, {"score": 4.5})
