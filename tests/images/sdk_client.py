"""SageMaker Python SDK (2.x) local mode against an smc image, offline. Run by the SDK venv's python:

    python sdk_client.py PLAN.json RESULT.json

PLAN: {"image", "workdir", "train_dir", "batch_dir", "port", "steps": [...]}, steps from
fit | fit_failure | deploy | deploy_csv | transform_MultiRecord | transform_SingleRecord | transform_json_lines. Optional
keys for images other than the tabular example: "channel" (default "train"), "hyperparameters",
"serve_env" (the Model's env) and "rows" (what deploy_csv sends). Each step's outcome (or its
error) goes into RESULT under the step's name, so one broken step does not hide the others.
The caller sets the offline environment (region, dummy keys, no instance metadata) and PATH.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import tarfile
import time
import traceback
import urllib.request
from pathlib import Path

from sagemaker.deserializers import CSVDeserializer, JSONDeserializer
from sagemaker.estimator import Estimator
from sagemaker.local import LocalSession
from sagemaker.model import Model
from sagemaker.predictor import Predictor
from sagemaker.serializers import CSVSerializer, JSONSerializer

ROLE = "arn:aws:iam::000000000000:role/smc-local"  # a full ARN: no IAM lookup
HYPERPARAMETERS = {"epochs": 300, "learning-rate": 0.05}
# SAGEMAKER_PROGRAM=train.py in the image is for training; serving names its handler module.
SERVE_ENV = {"SAGEMAKER_PROGRAM": "inference.py"}
ROWS = [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]


OUTBOUND: list[str] = []  # every attempt to reach beyond this machine, refused


def guard_network() -> None:
    """Refuse and record connections and lookups that leave the machine: proves the run is offline."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def local(host: str) -> bool:
        if host in ("localhost", "") or host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not local(str(address[0])):
            OUTBOUND.append(f"connect {address[0]}:{address[1]}")
            raise OSError(f"sdk_client: outbound connection to {address} refused (offline test)")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not local(str(host)):
            OUTBOUND.append(f"lookup {host}")
            raise socket.gaierror(f"sdk_client: lookup of {host} refused (offline test)")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect
    socket.getaddrinfo = getaddrinfo


def session(plan: dict) -> LocalSession:
    sess = LocalSession(sagemaker_config={"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {
        "Modules": {"TelemetryOptOut": True}}}})
    sess.config = {"local": {"local_code": True, "container_root": plan["workdir"],
                             "serving_port": plan["port"]}}
    return sess


def names_in(tarball: Path) -> list[str]:
    with tarfile.open(tarball) as tar:
        return sorted(tar.getnames())


def fit(sess: LocalSession, plan: dict, out: str, hyperparameters: dict) -> Estimator:
    estimator = Estimator(image_uri=plan["image"], role=ROLE, instance_count=1, instance_type="local",
                          output_path=f"file://{plan['workdir']}/{out}", hyperparameters=hyperparameters,
                          environment={"SMC_LOG_FORMAT": "json"}, sagemaker_session=sess)
    estimator.fit({plan.get("channel", "train"): f"file://{plan['train_dir']}"})
    return estimator


def step_fit(sess: LocalSession, plan: dict, results: dict) -> dict:
    estimator = fit(sess, plan, "out", plan.get("hyperparameters", HYPERPARAMETERS))
    results["model_data"] = estimator.model_data
    out = Path(plan["workdir"]) / "out"
    return {"model_data": estimator.model_data, "model_files": names_in(out / "model.tar.gz"),
            "output_files": names_in(out / "output.tar.gz")}


def step_fit_failure(sess: LocalSession, plan: dict, results: dict) -> dict:
    try:
        fit(sess, plan, "bad", {"epochs": "not-a-number"})
    except RuntimeError as exc:  # the SDK's verdict: the container's exit code was not 0 or 130
        out = Path(plan["workdir"]) / "bad"
        failure = ""
        with tarfile.open(out / "output.tar.gz") as tar:
            member = next((m for m in tar.getmembers() if Path(m.name).name == "failure"), None)
            if member is not None:
                failure = tar.extractfile(member).read().decode()
        return {"raised": str(exc)[:500], "failure": failure}
    return {"raised": None}


def wait_for_ping(port: int, timeout_s: float = 90) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/ping", timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - started
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"/ping on port {port} did not answer within {timeout_s} s")


def model(sess: LocalSession, plan: dict, results: dict) -> Model:
    return Model(image_uri=plan["image"], model_data=results["model_data"], role=ROLE,
                 env=plan.get("serve_env", SERVE_ENV), sagemaker_session=sess, predictor_cls=Predictor)


def step_deploy(sess: LocalSession, plan: dict, results: dict) -> dict:
    predictor = model(sess, plan, results).deploy(1, "local", wait=False)
    result: dict = {"ping_after_s": round(wait_for_ping(plan["port"]), 2)}
    try:
        predictor.serializer, predictor.deserializer = CSVSerializer(), CSVDeserializer()
        result["csv"] = predictor.predict(ROWS)
        predictor.serializer, predictor.deserializer = JSONSerializer(), JSONDeserializer()
        result["json"] = predictor.predict({"instances": ROWS})
        # predict() ignores the HTTP status: look at the raw answer to a bad request.
        raw = sess.sagemaker_runtime_client.invoke_endpoint(
            Body=b"not,numbers,here\n", EndpointName=predictor.endpoint_name, ContentType="text/csv",
            Accept="text/csv")
        result["bad_request_status"] = raw["Body"].status
    finally:
        started = time.monotonic()
        predictor.delete_endpoint()
        result["delete_endpoint_s"] = round(time.monotonic() - started, 2)
    return result


def step_deploy_csv(sess: LocalSession, plan: dict, results: dict) -> dict:
    """Deploy + predict for an image that takes CSV only (the bring-your-own Flask predictor)."""
    predictor = model(sess, plan, results).deploy(1, "local", wait=False)
    result: dict = {"ping_after_s": round(wait_for_ping(plan["port"]), 2)}
    try:
        predictor.serializer, predictor.deserializer = CSVSerializer(), CSVDeserializer()
        result["csv"] = predictor.predict(plan.get("rows", ROWS))
        raw = sess.sagemaker_runtime_client.invoke_endpoint(
            Body=b"{}", EndpointName=predictor.endpoint_name, ContentType="application/json")
        result["json_status"] = raw["Body"].status
    finally:
        started = time.monotonic()
        predictor.delete_endpoint()
        result["delete_endpoint_s"] = round(time.monotonic() - started, 2)
    return result


def step_transform(sess: LocalSession, plan: dict, results: dict, strategy: str, content_type: str = "text/csv",
                   source: str = "batch_dir", name: str = "") -> dict:
    out = Path(plan["workdir"]) / f"transform-{name or strategy}"
    transformer = model(sess, plan, results).transformer(
        instance_count=1, instance_type="local", strategy=strategy, assemble_with="Line",
        output_path=f"file://{out}", accept=content_type)
    transformer.transform(f"file://{plan[source]}", content_type=content_type, split_type="Line",
                          logs=False, wait=True)
    return {"outputs": {p.name: p.read_text() for p in sorted(out.iterdir()) if p.is_file()}}


STEPS = {
    "fit": step_fit,
    "fit_failure": step_fit_failure,
    "deploy": step_deploy,
    "deploy_csv": step_deploy_csv,
    "transform_MultiRecord": lambda s, p, r: step_transform(s, p, r, "MultiRecord"),
    "transform_SingleRecord": lambda s, p, r: step_transform(s, p, r, "SingleRecord"),
    # One JSON document per line, packed many to a body by MultiRecord: a JSON handler answers each.
    "transform_json_lines": lambda s, p, r: step_transform(s, p, r, "MultiRecord", "application/json",
                                                           "json_batch_dir", "json-lines"),
}


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    result_path = Path(sys.argv[2])
    guard_network()
    sess = session(plan)
    results: dict = {}
    report: dict = {}
    for name in plan["steps"]:
        started = time.monotonic()
        try:
            report[name] = {"ok": True, **STEPS[name](sess, plan, results)}
        except Exception as exc:  # noqa: BLE001 - any failure of a step is reported, the next step still runs
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                            "traceback": traceback.format_exc()[-3000:]}
        report[name]["seconds"] = round(time.monotonic() - started, 1)
        report["outbound"] = OUTBOUND
        result_path.write_text(json.dumps(report, indent=1))
        print(f"sdk_client: step {name} done in {report[name]['seconds']} s, ok={report[name]['ok']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
