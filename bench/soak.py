"""Bounded soak of `smc serve`: mixed valid, invalid, large and slow requests on keep-alive
connections while gunicorn workers are SIGKILLed at random; then a SIGTERM drain under the same load.

Reports requests sent, answered and lost (sent on an open connection, no HTTP response at all),
the 502s and cut answers (a request in flight on a worker that was killed: before its status line,
or while its body passed through nginx) against the number of kills, and the memory (RSS of smc
and every descendant) at start and end. Exits 1 if a request was lost, if there were more 502s
and cut answers than kills, if an answer was cut without nginx naming a worker that stopped
mid-answer, or if smc did not survive until the stop or exit 0 after it.

    python bench/soak.py --smc dist/smc              # 5 minutes
    python bench/soak.py --smc dist/smc --ci         # 60 s (CI)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANDLER = ROOT / "tests" / "fixtures" / "handlers" / "echo.py"
MAX_DURATION_S = 600
CUT_BY_WORKER = "upstream prematurely closed connection while reading upstream"

# kind -> (weight, statuses that are a correct answer)
KINDS = {
    "valid": (60, {200}),
    "slow_handler": (8, {200}),
    "large": (4, {200}),
    "too_large": (2, {413}),
    "bad_json": (6, {400}),
    "bad_content_type": (4, {415}),
    "slow_client": (4, {200}),
    "trace": (2, {405}),
    "huge_header": (2, {400}),
    "ping": (8, {200, 503}),  # 503 while no worker holds the model (both just killed) and while draining
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree_rss_mb(pid: int) -> float:
    """RSS of pid and all its descendants, MiB."""
    total_kb, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(p) for p in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total_kb / 1024


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(p) for p in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def gunicorn_workers(smc_pid: int) -> list[int]:
    """Workers: children of the gunicorn master, smc's forked child named smc-gunicorn."""
    todo, masters = [smc_pid], []
    while todo:  # the onefile bootloader sits above smc proper
        for child in children(todo.pop()):
            (masters if comm(child) == "smc-gunicorn" else todo).append(child)
    return [w for m in masters for w in children(m)]


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = Counter()
        self.answered = Counter()
        self.wrong = Counter()  # answered with a status outside the kind's expected set (not 502)
        self.bad_gateway = 0
        self.lost = 0
        self.lost_errors: list[str] = []
        self.cut = 0  # answers whose body ended early (their worker was SIGKILLed while sending it)
        self.cut_examples: list[str] = []
        self.refused = 0
        self.sigterm_at: float | None = None  # monotonic time smc was sent SIGTERM

    def when(self, at: float) -> str:
        """A lost request's send time, relative to SIGTERM: which phase lost it."""
        return "before SIGTERM" if self.sigterm_at is None else f"{at - self.sigterm_at:+.2f} s from SIGTERM"


def build_request(kind: str, rng: random.Random) -> tuple[str, str, bytes, dict[str, str]]:
    json_type = {"Content-Type": "application/json"}
    if kind == "valid":
        return "POST", "/invocations", json.dumps({"x": rng.random()}).encode(), json_type
    if kind == "slow_handler":
        return "POST", "/invocations", json.dumps({"sleep": rng.uniform(0.2, 1.0)}).encode(), json_type
    if kind == "large":
        return "POST", "/invocations", json.dumps({"blob": "x" * (5 * 1024 * 1024)}).encode(), json_type
    if kind == "too_large":
        return "POST", "/invocations", b"x" * (7 * 1024 * 1024), json_type
    if kind == "bad_json":
        return "POST", "/invocations", b"{not json", json_type
    if kind == "bad_content_type":
        return "POST", "/invocations", b"\x00\x01", {"Content-Type": "application/x-unknown"}
    if kind == "trace":
        return "TRACE", "/invocations", b"", {}
    if kind == "huge_header":
        return "GET", "/ping", b"", {"X-Big": "a" * 70000}
    return "GET", "/ping", b"", {}


def client(port: int, stats: Stats, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    kinds, weights = list(KINDS), [w for w, _ in KINDS.values()]
    conn: http.client.HTTPConnection | None = None
    served_on_conn = 0  # requests answered on this connection so far: 0 is a new connection
    while not stop.is_set():
        kind = rng.choices(kinds, weights)[0]
        # Built before connecting, as HTTP clients do: nginx listens with TCP_DEFER_ACCEPT, so a
        # connection whose first byte comes after nginx stopped listening is reset (docs/reliability.md).
        method, path, body, headers = build_request(kind, rng)
        if conn is None:
            served_on_conn = 0
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                conn.connect()
            except OSError:
                with stats.lock:
                    stats.refused += 1
                conn = None
                time.sleep(0.1)
                continue
        with stats.lock:
            stats.sent[kind] += 1
        sent_at = time.monotonic()
        resp = None
        try:
            if kind == "slow_client":
                body = json.dumps({"x": 1, "pad": "y" * 4000}).encode()
                conn.putrequest("POST", "/invocations")
                conn.putheader("Content-Type", "application/json")
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders()
                for start in range(0, len(body), 1000):  # the body in pieces over about a second
                    conn.send(body[start:start + 1000])
                    time.sleep(0.25)
            else:
                conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as exc:
            with stats.lock:
                if resp is not None:  # the status line came, the body was cut: a worker died mid-answer
                    stats.cut += 1
                    stats.cut_examples.append(f"{kind} {resp.status}: {exc!r}, sent {stats.when(sent_at)}")
                else:
                    stats.lost += 1
                    stats.lost_errors.append(f"{kind}: {exc!r}, sent {stats.when(sent_at)} on a "
                                             f"{'new' if not served_on_conn else 'kept-alive'} connection")
            conn.close()
            conn = None
            continue
        served_on_conn += 1
        with stats.lock:
            stats.answered[kind] += 1
            if resp.status == 502:
                stats.bad_gateway += 1
            elif resp.status not in KINDS[kind][1]:
                stats.wrong[f"{kind}:{resp.status}"] += 1
        if resp.will_close:
            conn.close()
            conn = None
        time.sleep(rng.uniform(0, 0.05))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smc", default=str(ROOT / "dist" / "smc"))
    parser.add_argument("--duration-s", type=float, default=300.0)
    parser.add_argument("--ci", action="store_true", help="short mode for CI: 60 s")
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--kill-every-s", type=float, default=4.0, help="mean seconds between worker kills")
    parser.add_argument("--json", help="also write the summary here")
    args = parser.parse_args()
    duration_s = min(60.0 if args.ci else args.duration_s, MAX_DURATION_S)

    base = Path(tempfile.mkdtemp(prefix="smc-soak-"))
    (base / "model" / "code").mkdir(parents=True)
    shutil.copy(HANDLER, base / "model" / "code" / "inference.py")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_", "SMC_", "_PYI_"))}
    env.update({"SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port), "SMC_PYTHON": "embedded", "SMC_LOG_FORMAT": "json",
                "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "SMC_WORKER_CRASH_LIMIT": "100000", "SMC_DRAIN_SECONDS": "2"})
    log_path = base / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([args.smc, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        return run(proc, port, duration_s, args, log_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"smc serve exited with {proc.returncode} before it was ready")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("smc serve was not ready within 60 s")


def run(proc: subprocess.Popen[bytes], port: int, duration_s: float, args: argparse.Namespace,
        log_path: Path) -> int:
    wait_ready(port, proc)
    rss_start = tree_rss_mb(proc.pid)
    stats, stop = Stats(), threading.Event()
    threads = [threading.Thread(target=client, args=(port, stats, stop, i), daemon=True) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    rng = random.Random(1)
    kills = 0
    started = time.monotonic()
    load_until = started + duration_s - 5  # the last seconds: SIGTERM drain under the same load
    next_kill = started + rng.expovariate(1 / args.kill_every_s)
    survived = True
    while time.monotonic() < load_until:
        time.sleep(0.1)
        if proc.poll() is not None:
            survived = False
            break
        if time.monotonic() >= next_kill:
            workers = gunicorn_workers(proc.pid)
            if workers:
                try:
                    os.kill(rng.choice(workers), signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
            next_kill = time.monotonic() + rng.expovariate(1 / args.kill_every_s)
    time.sleep(1.5)  # let the last kill's replacement load before measuring
    rss_end = tree_rss_mb(proc.pid)
    stats.sigterm_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        exit_code = proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        exit_code = None
    stop.set()
    for thread in threads:
        thread.join(timeout=70)
    sent, answered = sum(stats.sent.values()), sum(stats.answered.values())
    # nginx's own word that a worker's answer stopped midway (it had passed the status line on):
    # each cut answer the clients saw must be one of these, and each such worker one smc's test killed.
    cut_by_worker = log_path.read_text(errors="replace").count(CUT_BY_WORKER)
    summary = {
        "duration_s": round(time.monotonic() - started, 1), "clients": args.clients, "worker_kills": kills,
        "sent": sent, "answered": answered, "lost": stats.lost, "bad_gateway_502": stats.bad_gateway,
        "wrong_status": dict(stats.wrong), "refused_after_stop": stats.refused, "sent_by_kind": dict(stats.sent),
        "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1), "smc_exit_code": exit_code,
        "survived": survived, "lost_examples": stats.lost_errors[:5],
        "cut_answers": stats.cut, "cut_by_worker_in_nginx_log": cut_by_worker, "cut_examples": stats.cut_examples[:5],
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    problems = []
    if stats.lost:
        problems.append(f"{stats.lost} requests lost")
    if stats.bad_gateway + stats.cut > kills:
        problems.append(f"{stats.bad_gateway} 502s and {stats.cut} cut answers for {kills} worker kills")
    if stats.cut > cut_by_worker:
        problems.append(f"{stats.cut} answers cut, nginx saw a worker stop mid-answer {cut_by_worker} times")
    if stats.wrong:
        problems.append(f"unexpected statuses {dict(stats.wrong)}")
    if not survived or exit_code != 0:
        problems.append(f"smc exit code {exit_code} (survived the load: {survived})")
    if problems:
        print("soak FAILED: " + "; ".join(problems), file=sys.stderr)
        print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
        return 1
    print(f"soak ok: {sent} sent, {answered} answered, 0 lost, {stats.bad_gateway} 502s and {stats.cut} cut answers "
          f"for {kills} worker kills, "
          f"RSS {rss_start:.0f} -> {rss_end:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
