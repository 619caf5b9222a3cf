"""The MPI example's program in Python (mpi4py): the same allreduce as allreduce.c.

smc starts it on every rank as `python -m mpi4py allreduce.py ...` (as sagemaker-training does),
so an uncaught exception on one rank aborts the whole job instead of leaving the others waiting.
On an image without Python, `python` is smc's embedded interpreter; install mpi4py for it with
`RUN smc -m pip install mpi4py` (its wheel loads the image's Open MPI).
"""

import argparse
import os
import socket
import time

print(
    f"first_line rank={os.environ.get('OMPI_COMM_WORLD_RANK', '?')} host={socket.gethostname()} t={time.time():.6f}",
    flush=True,
)

from mpi4py import MPI

parser = argparse.ArgumentParser()
parser.add_argument("--fail-rank", type=int, default=-1)
parser.add_argument("--sleep-s", type=float, default=0.0)
args, _ = parser.parse_known_args()

comm = MPI.COMM_WORLD
if comm.rank == args.fail_rank:
    raise RuntimeError(f"rank {comm.rank} on {socket.gethostname()}: failing on purpose")
time.sleep(args.sleep_s)
total = comm.allreduce(comm.rank + 1, op=MPI.SUM)
expected = comm.size * (comm.size + 1) // 2
status = "ok" if total == expected else "WRONG"
print(
    f"allreduce rank={comm.rank} size={comm.size} host={socket.gethostname()} sum={total} expected={expected} {status}",
    flush=True,
)
if comm.rank == 0:
    model_dir = os.environ.get("SM_MODEL_DIR", "/opt/ml/model")
    with open(os.path.join(model_dir, "allreduce.txt"), "w") as f:
        f.write(f"size={comm.size} sum={total}\n")
raise SystemExit(0 if total == expected else 1)
