"""The worker's buffered request path in-process, this tree vs another source tree of smc.

    python bench/worker_path.py [--other /path/to/older/smc/source]

Runs NginxWorker.handle() on the tiny CSV request of bench/serve (demo model, example handler)
over a socketpair, without nginx, gunicorn's arbiter or the network: what changes in
supervisor_app/serve/{worker,wsgi,response,handlers}.py cost per request. Prints the CPU time (process_time: load on the machine does not inflate it) of the best of
5 rounds of 20,000 requests, alternating trees, each in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = r'''
import json, socket, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from supervisor_app import logs
from supervisor_app.worker import sync_worker as worker
from supervisor_app.worker import handlers, wsgi

logs.configure(20, "json")
model_dir = Path(tempfile.mkdtemp())
(model_dir / "code").mkdir()
(model_dir / "code" / "inference.py").write_text(Path(sys.argv[2]).read_text())
(model_dir / "model.json").write_text(json.dumps(
    {"feature_names": ["x1", "x2", "x3"], "weights": [1.0, 2.0, 3.0], "intercept": 0.5}))
loaded = handlers.load_handlers(model_dir / "code", "inference")
service = handlers.InferenceService(loaded, handlers.load_model(loaded, model_dir), model_dir, "application/json")
app = wsgi.App(service, 60, 6 * 1024 * 1024, {})
body = b"1.0,2.0,3.0\n4.0,5.0,6.0\n"
request = (b"POST /invocations HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 127.0.0.1\r\n"
           b"X-Amzn-SageMaker-Inference-Id: abc\r\nContent-Type: text/csv\r\nAccept: text/csv\r\n"
           b"Content-Length: %d\r\n\r\n%b" % (len(body), body))


class Worker(worker.NginxWorker):
    def __init__(self):  # only what handle() reads
        self.nr, self.max_requests, self.alive, self.wsgi = 0, 10**9, True, app
        self.app = None  # _stall_s() reads app.config; None: the default invocation timeout
        self.tmp = type("Tmp", (), {"notify": staticmethod(lambda: None)})()  # gunicorn's liveness file
        self.cfg = type("Cfg", (), {"worker_tmp_dir": tempfile.gettempdir(), "graceful_timeout": 1})()

    def notify(self):
        pass


class KeepOpen:
    def __init__(self, sock):
        self.sock = sock

    def __getattr__(self, name):
        return getattr(self.sock, name)

    def close(self):
        pass


ours, theirs = socket.socketpair()
handler, client = Worker(), KeepOpen(theirs)
rounds = []
for _ in range(5):
    started = time.process_time()
    for _ in range(20000):
        ours.sendall(request)
        handler.handle(None, client, None)
        ours.recv(65536)
    rounds.append((time.process_time() - started) / 20000 * 1e6)
print(min(rounds))
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, help="another smc source tree (e.g. `git archive` of an older commit)")
    parser.add_argument("--python", default=sys.executable, help="a Python with gunicorn (the build venv's)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    handler = ROOT / "examples" / "tabular" / "code" / "inference.py"
    trees = {"this": ROOT, **({"other": args.other.resolve()} if args.other else {})}
    best: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.repeat):
        for name, tree in trees.items():
            out = subprocess.run([args.python, "-c", PROBE, str(tree), str(handler)], capture_output=True, text=True,
                                 check=True, cwd=tree)
            best[name].append(float(out.stdout.strip()))
    for name, values in best.items():
        print(f"{name:6} {min(values):7.1f} us/request (runs {[round(v, 1) for v in values]})")
    if args.other:
        print(f"this/other {min(best['this']) / min(best['other']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
