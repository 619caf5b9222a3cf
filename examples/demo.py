"""The main job end to end through the frozen binary: train the example model, serve it, invoke it.

    python examples/demo.py [--smc dist/smc] [--keep]

A temporary SAGEMAKER_BASE_DIR stands in for /opt/ml, laid out as SageMaker lays it out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "tabular"
TRUE_MODEL = {"weights": [2.0, -3.0, 0.5], "intercept": 1.0}  # how data/train.csv was generated


def write_job(base: Path) -> None:
    config = base / "input" / "config"
    config.mkdir(parents=True)
    channel = base / "input" / "data" / "train"
    channel.mkdir(parents=True)
    shutil.copy(PROJECT / "data" / "train.csv", channel / "train.csv")
    # As the SageMaker Python SDK writes them: every value a JSON-encoded string.
    hyperparameters = {
        "epochs": "300",
        "learning-rate": "0.05",
        "sagemaker_program": json.dumps("train.py"),
        "sagemaker_submit_directory": json.dumps(str(PROJECT / "code")),
        "sagemaker_region": json.dumps("us-east-1"),
    }
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})
    )
    (config / "inputdataconfig.json").write_text(
        json.dumps({"train": {"ContentType": "text/csv", "TrainingInputMode": "File"}})
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def wait_ready(url: str, server: subprocess.Popen, deadline_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        if server.poll() is not None:
            raise SystemExit(f"demo: smc serve exited early with {server.returncode}")
        try:
            if request(url + "/ping")[0] == 200:
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"demo: /ping did not answer 200 within {deadline_s} s")


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smc", default=str(HERE.parent / "dist" / "smc"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary /opt/ml tree")
    args = parser.parse_args()
    smc = str(Path(args.smc).resolve())
    work = Path(tempfile.mkdtemp(prefix="smc-demo-"))
    base = work / "opt_ml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_", "_PYI_"))}
    env.update(SAGEMAKER_BASE_DIR=str(base), SMC_LOG_FORMAT=os.environ.get("SMC_LOG_FORMAT", "console"))
    try:
        write_job(base)
        step(f"smc train   (SAGEMAKER_BASE_DIR={base})")
        train = subprocess.run([smc, "train"], env=env, timeout=300)
        if train.returncode != 0:
            failure = base / "output" / "failure"
            print(failure.read_text() if failure.exists() else "(no failure file)")
            return 1
        model = json.loads((base / "model" / "model.json").read_text())
        print(f"model.json: weights={[round(w, 3) for w in model['weights']]} intercept={model['intercept']:.3f}")
        print(f"   (truth: weights={TRUE_MODEL['weights']} intercept={TRUE_MODEL['intercept']})")

        port = free_port()
        step(f"smc serve   (port {port})")
        serve_env = dict(env, SAGEMAKER_BIND_TO_PORT=str(port), SAGEMAKER_MODEL_SERVER_WORKERS="2")
        server = subprocess.Popen([smc, "serve"], env=serve_env)
        url = f"http://127.0.0.1:{port}"
        try:
            ready_s = wait_ready(url, server, deadline_s=30)
            step(f"ready after {ready_s:.2f} s; invoking")
            calls = [
                ("text/csv", "text/csv", b"1,2,3\n0.5,0.5,0.5\n"),
                ("application/json", "application/json", json.dumps({"instances": [[1, 2, 3], [0, 0, 0]]}).encode()),
            ]
            ok = True
            for content_type, accept, body in calls:
                status, got_type, text = request(
                    url + "/invocations", body, {"Content-Type": content_type, "Accept": accept}
                )
                print(f"POST /invocations {content_type} -> {status} {got_type}\n{text.strip()}")
                ok &= status == 200 and got_type.startswith(accept)
            expected = 2 * 1 - 3 * 2 + 0.5 * 3 + 1
            print(f"   (truth for [1, 2, 3]: {expected})")
        finally:
            step("SIGTERM: drain and stop")
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=40)
            print(f"smc serve exited {code}")
        return 0 if ok and code == 0 else 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
