"""Differential test against AWS's model-hosting-container-standards (MHCS): the session and adapter
sequences of tests/mhcs/sequences.py go to MHCS's app (tests/mhcs/app.py, wired as vLLM wires it,
over the stand-in engine) and to the frozen `smc serve` (handler mode; engine mode over the same
stand-in engine; engine mode with the MHCS app as the engine and smc in passthrough); status, the
SageMaker response headers, the body's kind and a text body (ids named) are compared step by step.

MHCS answers the session protocol in front of its handler (its in-process `mhcs_handler` target
answers the session sequences as `mhcs_engine` does), so one MHCS run per sequence is the reference
for every smc mode. A step may differ only as listed in DIFFERENCES (documented in
docs/llm-contract-parity.md); a listed difference that stops occurring fails too, so the list stays
true.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.mhcs import runner, sequences, targets
from tests.mhcs.runner import Outcome
from tests.mhcs.venv import mhcs_python
from tests.serve.conftest import nginx_required

pytestmark = pytest.mark.toolkit

MODES = ("handler", "engine", "passthrough")
CASES = [(seq, mode) for seq in sequences.ALL for mode in MODES]


def answers(target: str, sequence: sequences.Sequence, work: Path, binary: Path | None, python: Path | None):
    with targets.serving(target, sequence, work, binary, python) as port:
        return runner.run(port, sequence, {"adapter_dir": str(targets.adapter_dir(work))})


@pytest.fixture(scope="module")
def mhcs_venv() -> Path:
    return mhcs_python()


@pytest.fixture(scope="module")
def mhcs(tmp_path_factory, mhcs_venv) -> dict[str, list[Outcome]]:
    """MHCS's answers to every sequence (all four servers at once: the expiry waits overlap)."""
    python = mhcs_venv
    root = tmp_path_factory.mktemp("mhcs")
    with ThreadPoolExecutor(len(sequences.ALL)) as pool:
        futures = {seq.name: pool.submit(answers, "mhcs_engine", seq, root / seq.name, None, python)
                   for seq in sequences.ALL}
        return {name: future.result() for name, future in futures.items()}


# Headers smc sets and MHCS never does, by mode and the route's first segment (docs: "smc's own
# headers"): each must be on every smc answer there, and is then left out of the comparison.
# Handler mode answers /adapters in its workers and passthrough through nginx, both with it;
# engine mode in its adapter hop, without.
INFERENCE_ID = "x-amzn-sagemaker-inference-id"
SMC_ONLY_HEADERS = {(mode, route): {INFERENCE_ID} for mode in MODES for route in ("invocations", "adapters")
                    if (mode, route) != ("engine", "adapters")}


def own_headers_dropped(step: sequences.Step, mode: str, ours: Outcome) -> tuple[Outcome, list[str]]:
    own = SMC_ONLY_HEADERS.get((mode, step.path.split("?")[0].split("/")[1]), set())
    missing = [f"smc's own header {name} missing" for name in sorted(own - set(ours.headers))]
    kept = {k: v for k, v in ours.headers.items() if k not in own}
    return Outcome(ours.status, kept, ours.body_kind, ours.text, ours.body), missing


def differing(ours: Outcome, theirs: Outcome) -> list[str]:
    found = ["status"] if ours.status != theirs.status else []
    found += [f"header {name}" for name in sorted(set(ours.headers) | set(theirs.headers))
              if ours.headers.get(name) != theirs.headers.get(name)]
    found += ["body kind"] if ours.body_kind != theirs.body_kind else []
    return found + (["body text"] if ours.body_kind == theirs.body_kind and ours.text != theirs.text else [])


@pytest.mark.parametrize(("sequence", "mode"), CASES, ids=[f"{s.name}-{m}" for s, m in CASES])
def test_smc_answers_as_mhcs(sequence, mode, mhcs, mhcs_venv, smc_binary, tmp_path):
    nginx_required()
    ours = answers(f"smc_{mode}", sequence, tmp_path, smc_binary, mhcs_venv)
    report = []
    for step, theirs, mine in zip(sequence.steps, mhcs[sequence.name], ours):
        mine, missing = own_headers_dropped(step, mode, mine)
        report += [f"{step.name}: {problem}" for problem in missing]
        found = differing(mine, theirs)
        key = (sequence.name, step.name)
        listed = DIFFERENCES.get((*key, mode)) or DIFFERENCES.get((*key, "*"))
        if mode == "passthrough":  # MHCS answers behind smc: nothing may differ
            listed = None
        shown = f"\n  mhcs {theirs.shown()}\n  smc  {mine.shown()}"
        if listed is None:
            if found:
                report.append(f"{step.name}: unexpected difference in {found}:{shown}")
        else:
            kind, check = listed
            if not found:
                report.append(f"{step.name}: listed as {kind!r} but both answered alike:{shown}")
            elif not check(theirs, mine):
                report.append(f"{step.name}: not the listed difference {kind!r} ({found}):{shown}")
    assert not report, f"{sequence.name} in {mode} mode:\n" + "\n".join(report)


def test_mhcs_answers_as_the_contract_says(mhcs):
    """The reference itself, against ../shared/reference/llm-contract.md §1-2, so a change in MHCS
    (or in how app.py wires it) cannot pass by making both sides fail alike."""
    seen = {s.name: dict(zip((step.name for step in s.steps), mhcs[s.name])) for s in sequences.ALL}
    new = "x-amzn-sagemaker-new-session-id"
    assert seen["sessions"]["open"].headers == {new: "<new id>; Expires=now+ttl"}
    assert seen["sessions"]["close"].headers == {"x-amzn-sagemaker-closed-session-id": "{s1}"}
    assert {name: o.status for name, o in seen["sessions"].items() if o.status != 200} == {
        "use_after_close": 400, "close_again": 400, "use_unknown_id": 400, "close_unknown_id": 400,
        "use_malformed_id": 400, "use_id_ending_in_dash": 400, "use_id_over_256_chars": 400,
        "open_with_extra_keys": 400, "close_with_extra_keys": 400, "unknown_request_type": 400,
        "close_without_id": 424, "csv_body_no_session": 400, "close_with_new_session_header": 424}
    assert [o.status for o in mhcs["sessions_expired"]] == [200, 200, 200, 400, 424]
    assert [o.status for o in mhcs["sessions_disabled"]] == [400, 400, 400, 400, 400, 200]
    assert {name: o.status for name, o in seen["adapters"].items()} == {
        "load_json": 200, "load_query": 200, "load_duplicate": 400, "invoke_with_identifier": 200,
        "invoke_query_loaded": 200, "invoke_unknown_identifier": 404, "invoke_without_identifier": 200,
        "unload": 200, "invoke_unloaded": 404, "unload_again": 404, "unload_unknown": 404,
        "load_name_with_slash": 200, "load_name_dot_dot": 200, "load_empty_name": 400,
        "load_missing_src": 400, "load_src_missing_on_disk": 404, "load_no_body_no_query": 400,
        "load_json_array": 400, "load_with_alias": 200, "unload_with_alias": 200,
        "invoke_identifier_csv_body": 400, "list": 405, "delete_without_name": 405, "unload_second": 200}
    assert seen["adapters"]["load_with_alias"].text == "Adapter friendly registered"
    assert seen["adapters"]["unload_with_alias"].text == "Adapter friendly unregistered"


# -- the listed differences (docs/llm-contract-parity.md): (sequence, step, mode or "*": handler and
#    engine) -> (kind, a check that the two answers differ exactly that way) ------------------------
Check = Callable[[Outcome, Outcome], bool]



def answered(mhcs_status: int, smc_status: int) -> Check:
    """Only the status differs (and the body, which follows it); the SageMaker headers are the same."""
    return lambda theirs, ours: ((theirs.status, ours.status) == (mhcs_status, smc_status)
                                 and theirs.headers == ours.headers)


M1 = "M1 a body that is not JSON is inference"
M2 = "M2 an expired session is refused"
M3 = "M3 sessions off: only a well-formed session request is refused"
M4 = "M4 sessions off in engine mode: the engine answers"
A1 = "A1 a duplicate adapter name is 409"
A2 = "A2 adapter names are checked"
A3 = "A3 GET /adapters lists the adapters"
DIFFERENCES: dict[tuple[str, str, str], tuple[str, Check]] = {
    ("sessions", "csv_body_no_session", "*"): (M1, answered(400, 200)),
    ("sessions_expired", "use_expired", "*"): (M2, answered(200, 400)),
    ("sessions_disabled", "open_with_extra_keys", "handler"): (M3, answered(400, 200)),
    **{("sessions_disabled", step, "engine"): (M4, answered(400, 200))
       for step in ("open", "close", "open_with_extra_keys", "use_id", "plain_with_new_session_header")},
    ("adapters", "load_duplicate", "*"): (A1, answered(400, 409)),
    ("adapters", "load_name_with_slash", "*"): (A2, answered(200, 400)),
    ("adapters", "load_name_dot_dot", "*"): (A2, answered(200, 400)),
    ("adapters", "invoke_identifier_csv_body", "handler"): (M1, answered(400, 200)),
    ("adapters", "list", "*"): (A3, answered(405, 200)),
}


def test_difference_list_names_real_steps():
    """Every listed difference names a step that exists and a kind docs/llm-contract-parity.md
    explains; the counts printed here are the page's."""
    doc = (ROOT / "docs" / "llm-contract-parity.md").read_text()
    assert all(f"**{kind}.**" in doc for kind, _ in DIFFERENCES.values())
    names = {(seq.name, step.name) for seq in sequences.ALL for step in seq.steps}
    assert {(seq, step) for seq, step, _ in DIFFERENCES} <= names
    compared = sum(len(seq.steps) for seq, _ in CASES)
    listed = sum(2 if mode == "*" else 1 for _, _, mode in DIFFERENCES)
    print(f"compared steps: {compared}, listed differences: {listed} "
          f"of {len({kind for kind, _ in DIFFERENCES.values()})} kinds")
