"""Serving differential test: the same inference.py files and requests against sagemaker-inference
1.10.1 on multi-model-server (the toolkit smc replaces) and the frozen `smc serve`.

Each handler file in tests/fixtures/parity is served once by each server; every request of its
case list goes to both; status, body and Content-Type are compared. A case may differ only as
listed in DIFFERENCES, each entry naming the difference documented in docs/parity.md; a listed
difference that stops occurring fails too, so the list stays true.
"""

from __future__ import annotations

import http.client
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.serve import toolkit_oracle
from tests.serve.conftest import Server, nginx_required

pytestmark = pytest.mark.toolkit

PARITY = ROOT / "tests" / "fixtures" / "parity"
JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
ATTRS = "X-Amzn-SageMaker-Custom-Attributes"


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    headers: dict[str, str]


def case(name: str, body: str | bytes, content_type: str | None = JSON, accept: str | None = None, **extra: str):
    headers = dict(extra)
    if content_type is not None:
        headers["Content-Type"] = content_type
    if accept is not None:
        headers["Accept"] = accept
    return Case(name, body.encode() if isinstance(body, str) else body, headers)


def npy_bytes() -> bytes:
    """np.save of int64 [1, 2, 3], written out so the test needs no numpy of its own."""
    header = "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }"
    header += " " * (64 - 10 - len(header) - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"".join(
        n.to_bytes(8, "little") for n in (1, 2, 3))


CASES: dict[str, list[Case]] = {
    "default_codecs": [
        case("json_no_accept", "[1, 2, 3]"),
        case("json_nested_accept_json", "[[1.5, 2], [3, 4]]", accept=JSON),
        case("json_charset", "[1, 2]", content_type="application/json; charset=utf-8"),
        case("csv_in_json_out", "1,2\n3,4\n", content_type=CSV, accept=JSON),
        case("csv_charset", "1,2\n", content_type="text/csv; charset=utf-8", accept=JSON),
        case("json_in_csv_out", "[[1, 2], [3, 4]]", accept=CSV),
        case("json_in_npy_out", "[1, 2, 3]", accept=NPY),
        case("npy_in_json_out", npy_bytes(), content_type=NPY, accept=JSON),
        case("accept_any", "[1]", accept="*/*"),
        case("accept_list_first_wins", "[1]", accept="text/csv, application/json"),
        case("accept_q_skips_unsupported", "[1]", accept="text/html;q=0.9, application/json;q=0.5"),
        case("accept_q_order", "[1]", accept="application/json;q=0.2, text/csv;q=0.9"),
        case("accept_unsupported", "[1]", accept="image/png"),
        case("accept_type_wildcard", "[1]", accept="text/*"),
        case("bad_json", "[1, 2"),
        case("empty_body", ""),
        case("no_content_type", "[1]", content_type=None),
        case("unsupported_content_type", "abc", content_type="application/octet-stream"),
    ],
    "custom_fns": [
        case("json", '{"a": 1}', accept=JSON),
        case("csv_text", "1,2", content_type=CSV, accept=CSV),
        case("no_accept", "x"),
        case("accept_any", "x", accept="*/*"),
        case("accept_list", "x", accept="text/csv, application/json"),
        case("accept_q", "x", accept="text/csv;q=0.1, application/json"),
        case("json_charset", '"x"', content_type="application/json; charset=utf-8", accept=JSON),
        case("binary", b"\x00\x01\xff", content_type="application/octet-stream", accept=JSON),
        case("empty_body", "", accept=JSON),
    ],
    "transform": [
        case("json", '{"a": 1}', accept=JSON),
        case("no_accept", "x"),
        case("accept_any", "x", accept="*/*"),
        case("accept_list", "x", accept="text/csv, application/json"),
        case("tuple_sets_type", "tuple", accept=JSON),
        case("csv_charset", "1,2", content_type="text/csv; charset=utf-8", accept=CSV),
        case("binary", b"\x00\x01", content_type="application/octet-stream", accept=JSON),
    ],
    "with_context": [
        case("custom_attributes", '"x"', accept=JSON, **{ATTRS: "trace=1,user=a"}),
        case("no_custom_attributes", '"x"', accept=JSON),
    ],
    "hooks": [
        case("hooks_ran_in_order", "[1]", accept=JSON),
    ],
    "context_api": [
        case("status_type_headers", '"x"', accept=JSON, **{"X-Amzn-SageMaker-Target-Variant": "variant-1"}),
    ],
    "raising": [
        case("ok", "fine", content_type=CSV),
        case("value_error", "value-error", content_type=CSV),
        case("toolkit_error", "toolkit-error", content_type=CSV),
        case("toolkit_error_default_message", "toolkit-error-default", content_type=CSV),
        case("key_error", "key-error", content_type=CSV),
        case("predict_crash", "crash", content_type=CSV),
    ],
}


def send(port: int, path: str, c: Case) -> tuple[int, bytes, str | None, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=c.body, headers=c.headers)
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        return resp.status, resp.read(), headers.get("content-type"), headers
    finally:
        conn.close()


def model_tree(root: Path, handler: str) -> Path:
    model = root / handler / "model"
    (model / "code").mkdir(parents=True)
    shutil.copy(PARITY / f"{handler}.py", model / "code" / "inference.py")
    return model


@pytest.fixture(scope="module")
def toolkit(tmp_path_factory):
    """One MMS for the whole module: the first handler file is its /opt/ml/model, the others are
    registered as further models (each in its own worker process, as the first)."""
    root = tmp_path_factory.mktemp("toolkit")
    handlers = list(CASES)
    base = root / "base"
    base.mkdir()
    (base / "model").symlink_to(model_tree(root, handlers[0]))
    server = toolkit_oracle.ToolkitServer(base)
    try:
        server.wait_ready()
        for handler in handlers[1:]:
            server.register(handler, model_tree(root, handler).parent / "model")
        yield server
    finally:
        server.stop()


def compare(toolkit_result: tuple, smc_result: tuple) -> list[str]:
    """What differs between two (status, body, content_type, headers) answers: the three the issue
    names, plus the custom attributes a handler sets on the response."""
    found = []
    if toolkit_result[0] != smc_result[0]:
        found.append("status")
    if toolkit_result[1] != smc_result[1]:
        found.append("body")
    if toolkit_result[2] != smc_result[2]:
        found.append("content_type")
    attrs = ATTRS.lower()
    if toolkit_result[3].get(attrs) != smc_result[3].get(attrs):
        found.append("custom_attributes")
    return found


@pytest.mark.parametrize("handler", list(CASES))
def test_smc_answers_as_the_toolkit(handler, toolkit, smc_binary, tmp_path):
    nginx_required()
    base = tmp_path / "opt_ml"
    base.mkdir()
    model = model_tree(tmp_path, handler)
    (base / "model").symlink_to(model)
    smc = Server(smc_binary, base, free_port(),
                 {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", "PYTHONPATH": str(toolkit_oracle.site_packages())})
    report = []
    try:
        smc.wait_ready(timeout=60)
        path = "/invocations" if handler == list(CASES)[0] else f"/predictions/{handler}"
        for c in CASES[handler]:
            tk, ours = send(toolkit.port, path, c), send(smc.port, "/invocations", c)
            found = compare(tk, ours)
            shown_tk, shown_ours = (tk[0], tk[1][:160], tk[2]), (ours[0], ours[1][:160], ours[2])
            expected = DIFFERENCES.get(f"{handler}.{c.name}")
            if expected is None:
                if found:
                    report.append(f"{c.name}: unexpected difference in {found}:\n  toolkit {shown_tk}\n  smc     {shown_ours}")
            else:
                kind, check = expected
                if not found:
                    report.append(f"{c.name}: listed as {kind!r} but both answered {shown_tk}")
                elif not check(tk, ours):
                    report.append(f"{c.name}: not the listed difference {kind!r}:\n  toolkit {shown_tk}\n  smc     {shown_ours}")
    finally:
        smc.stop()
    assert not report, "\n".join(report)



# -- the listed differences (docs/parity.md, "Serving differences"): each with a check that the
#    two answers differ exactly that way -----------------------------------------------------------
def _json_error(answer: tuple) -> bool:
    try:
        body = json.loads(answer[1])
    except ValueError:
        return False
    return answer[2] == JSON and body.get("status") == answer[0] and bool(body.get("message"))


def error_body(tk: tuple, ours: tuple) -> bool:
    """S1: same status; smc's body is JSON, the toolkit's is the message plus a traceback."""
    return tk[0] == ours[0] and tk[2] is None and b"Traceback" in tk[1] and _json_error(ours)


def client_status(status: int) -> Callable[[tuple, tuple], bool]:
    """S2: the toolkit answers 500 for what is the client's fault; smc names it."""
    return lambda tk, ours: tk[0] == 500 and ours[0] == status and _json_error(ours)


def smc_serves(content_type: str) -> Callable[[tuple, tuple], bool]:
    """S3-S6: the toolkit fails (500), smc answers 200 with the type the client asked for."""
    return lambda tk, ours: tk[0] == 500 and ours[0] == 200 and ours[2] == content_type


def handed(**smc_fields) -> Callable[[tuple, tuple], bool]:
    """S3/S7/S8: the handler saw other arguments; each field is what smc handed it, the toolkit's
    value differs (raw header, bytes/bytearray)."""

    def check(tk: tuple, ours: tuple) -> bool:
        seen_tk, seen_ours = json.loads(tk[1]), json.loads(ours[1])
        return tk[0] == ours[0] == 200 and all(
            seen_ours[k] == v and seen_tk[k] != v for k, v in smc_fields.items())

    return check


def chosen_type(content_type: str, **smc_fields) -> Callable[[tuple, tuple], bool]:
    """S7: an Accept list: smc answers in the one type it chose (and hands it to the handler); the
    toolkit hands the raw list to output_fn/transform_fn and, for transform_fn without a type,
    sends that list back as the Content-Type."""

    def check(tk: tuple, ours: tuple) -> bool:
        fields_ok = not smc_fields or all(json.loads(ours[1])[k] == v for k, v in smc_fields.items())
        return tk[0] == ours[0] == 200 and ours[2] == content_type and fields_ok

    return check


def own_content_type(tk: tuple, ours: tuple) -> bool:
    """S9: set_response_content_type: smc answers with the handler's type, the toolkit replaces it
    with the Accept type; status and body are the same."""
    return tk[:2] == ours[:2] and tk[2] == JSON and ours[2] == "application/vnd.smc+json"


S1, S2 = "error bodies are JSON", "client errors are 4xx"
DIFFERENCES: dict[str, tuple[str, Callable[[tuple, tuple], bool]]] = {
    "default_codecs.json_charset": ("S3 media type parameters", smc_serves(JSON)),
    "default_codecs.csv_charset": ("S3 media type parameters", smc_serves(JSON)),
    "default_codecs.accept_q_skips_unsupported": ("S4 Accept q-values and wildcards", smc_serves(JSON)),
    "default_codecs.accept_q_order": ("S4 Accept q-values and wildcards", smc_serves(CSV)),
    "default_codecs.accept_type_wildcard": ("S4 Accept q-values and wildcards", smc_serves(CSV)),
    "default_codecs.no_content_type": ("S5 missing Content-Type is JSON", smc_serves(JSON)),
    "default_codecs.accept_unsupported": (S2, client_status(406)),
    "default_codecs.unsupported_content_type": (S2, client_status(415)),
    "default_codecs.bad_json": (S2, client_status(400)),
    "default_codecs.empty_body": (S2, client_status(400)),
    "custom_fns.accept_list": ("S7 one chosen Accept type", chosen_type(CSV)),
    "custom_fns.accept_q": ("S7 one chosen Accept type", handed(accept=JSON)),
    "custom_fns.json_charset": ("S3 media type parameters", handed(data_type="str", content_type=JSON)),
    "transform.accept_list": ("S7 one chosen Accept type", chosen_type(CSV, accept=CSV)),
    "transform.csv_charset": ("S3 media type parameters", handed(data_type="str", content_type=CSV)),
    "transform.binary": ("S8 bytes, not bytearray", handed(data_type="bytes")),
    "raising.value_error": (S2, client_status(400)),
    "raising.toolkit_error": (S1, error_body),
    "raising.toolkit_error_default_message": (S1, error_body),
    "raising.key_error": (S1, error_body),
    "raising.predict_crash": (S1, error_body),
    "context_api.status_type_headers": ("S9 the handler's own content type", own_content_type),
}


def test_difference_list_names_real_cases():
    """Every listed difference names a case that exists; the counts go to docs/parity.md."""
    names = {f"{handler}.{c.name}" for handler, cases in CASES.items() for c in cases}
    assert set(DIFFERENCES) <= names
    print(f"compared cases: {len(names)}, listed differences: {len(DIFFERENCES)} "
          f"of {len({kind for kind, _ in DIFFERENCES.values()})} kinds")


def _smc_serving(smc_binary, tmp_path, handler: str) -> Server:
    base = tmp_path / "opt_ml"
    base.mkdir()
    (base / "model").symlink_to(model_tree(tmp_path, handler))
    server = Server(smc_binary, base, free_port(),
                    {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", "PYTHONPATH": str(toolkit_oracle.site_packages())})
    server.wait_ready(timeout=60)
    return server


def test_custom_attributes_reach_the_handler_and_the_client(toolkit, smc_binary, tmp_path):
    """Checked on its own too, on both servers, so the comparison above cannot pass with the
    header absent on both: the handler read the request's attributes and the client got its echo."""
    nginx_required()
    c = CASES["with_context"][0]
    server = _smc_serving(smc_binary, tmp_path, "with_context")
    try:
        answers = {"toolkit": send(toolkit.port, "/predictions/with_context", c),
                   "smc": send(server.port, "/invocations", c)}
    finally:
        server.stop()
    for name, answer in answers.items():
        assert answer[0] == 200 and json.loads(answer[1])["attributes"] == "trace=1,user=a", (name, answer)
        assert answer[3].get(ATTRS.lower()) == "echo=trace=1,user=a", (name, answer)


def test_the_context_api_reaches_the_client(toolkit, smc_binary, tmp_path):
    """Every Context method tests/fixtures/parity/context_api.py calls, checked on its own on both
    servers (the comparison above could pass with a method that does nothing on both)."""
    nginx_required()
    c = CASES["context_api"][0]
    server = _smc_serving(smc_binary, tmp_path, "context_api")
    try:
        answers = {"toolkit": send(toolkit.port, "/predictions/context_api", c),
                   "smc": send(server.port, "/invocations", c)}
    finally:
        server.stop()
    for name, (status, body, content_type, headers) in answers.items():
        seen = json.loads(body)
        assert (seen["header"], seen["property"]) == ("variant-1", "variant-1"), (name, seen)
        assert seen["in_all_headers"] and seen["in_properties"] and seen["model_dir_set"], (name, seen)
        assert seen["response_headers"] == ["X-Smc-Handler", "X-Smc-Property"], (name, seen)
        assert seen["response_content_type"] == "application/vnd.smc+json", (name, seen)
        assert status == 201, (name, status, body)  # set_response_status
        assert headers.get("x-smc-handler") == "set_response_header", (name, headers)
        assert headers.get("x-smc-property") == "add_response_property", (name, headers)
    # set_response_content_type: smc answers with it; the toolkit replaces it with the Accept type (S9).
    assert answers["smc"][2] == "application/vnd.smc+json" and answers["toolkit"][2] == JSON, answers
