"""Run inside the sagemaker-training venv (not by pytest): print, as JSON, what the toolkit's own
launchers build for the /opt/ml tree in SAGEMAKER_BASE_DIR.

    python toolkit_oracle.py mpi|torchrun|tf [path of sagemaker-tensorflow-training's training.py]
"""

import ast
import json
import os
import sys
from pathlib import Path

from sagemaker_training import environment, runner


def mpi():
    launcher = runner.get(runner.RunnerType.MPI)
    return {"runner": type(launcher).__name__, "command": launcher._create_command()}


def torchrun():
    environment.Environment()  # writes CURRENT_HOST & co. into os.environ; not the launcher's doing
    before = dict(os.environ)
    launcher = runner.get(runner.RunnerType.TorchDistributed)
    command = launcher._create_command()
    added = {k: v for k, v in os.environ.items() if before.get(k) != v}
    return {"command": command, "env": added, "processes_per_host": launcher._processes_per_host}


def tf(training_py):
    # The TF toolkit module imports tensorflow at the top; take its TF_CONFIG builders alone.
    tree = ast.parse(Path(training_py).read_text())
    wanted = {"_is_host_master", "_build_tf_config_for_ps", "_build_tf_config_for_mwms"}
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in wanted]
    namespace = {}
    code = compile(ast.Module(body=functions, type_ignores=[]), training_py, "exec")
    exec(code, namespace)  # noqa: S102 - the oracle runs the toolkit's own code
    env = environment.Environment()
    hosts, current = env.distribution_hosts, env.current_host
    result = {
        "worker": json.dumps(namespace["_build_tf_config_for_ps"](hosts=hosts, current_host=current)),
        "mwms": json.dumps(namespace["_build_tf_config_for_mwms"](hosts=hosts, current_host=current)),
    }
    if len(hosts) > 1:
        result["ps"] = json.dumps(namespace["_build_tf_config_for_ps"](hosts, current, ps_task=True))
    return result


if __name__ == "__main__":
    kind = sys.argv[1]
    out = tf(sys.argv[2]) if kind == "tf" else {"mpi": mpi, "torchrun": torchrun}[kind]()
    print("ORACLE " + json.dumps(out))
