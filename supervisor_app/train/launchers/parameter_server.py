"""TensorFlow parameter servers (`sagemaker_parameter_server_enabled`, more than one host), as
sagemaker-tensorflow-training runs them: every host starts a `ps` task (tf.distribute.Server on
port 2223, no GPU) next to the script, which gets TF_CONFIG as `master` (the first host) or
`worker`. A worker host keeps its ps task up until the master's port 2222 closes, since the
master may still need it; then the host exits with its script's status.

The ps task runs in the job's Python (which has TensorFlow) as `python -c`; TF_CONFIG tells it
its place. Unlike the TF toolkit, smc stops the master's ps task when the master's script ends
(the toolkit leaves a non-daemon process behind) and polls the master every second, not ten.
"""

from __future__ import annotations

import time
from typing import Any

from supervisor_app.train import cluster as cluster_mod
from supervisor_app.train.cluster import Cluster
from supervisor_app.train.launchers import background, tf_config

MASTER_PORT = 2222
_POLL_S = 1.0
# The TF toolkit's server: ClusterSpec from TF_CONFIG's cluster, job "ps", no GPU.
SERVER_CODE = (
    "import json, os\n"
    "import tensorflow as tf\n"
    "config = json.loads(os.environ['TF_CONFIG'])\n"
    "server = tf.distribute.Server(tf.train.ClusterSpec(config['cluster']), job_name='ps',\n"
    "    task_index=config['task']['index'], config=tf.compat.v1.ConfigProto(device_count={'GPU': 0}))\n"
    "server.join()\n"
)


def server_environment(cluster: Cluster, env: dict[str, str]) -> dict[str, str]:
    config = tf_config.parameter_server(list(cluster.hosts), cluster.current_host, ps_task=True)
    return dict(env, TF_CONFIG=tf_config.render(config))


def start_server(python_argv: list[str], cluster: Cluster, env: dict[str, str], log: Any) -> Any:
    server_env = server_environment(cluster, env)
    child = background.start([*python_argv, "-c", SERVER_CODE], server_env)
    log.info("parameter_server_started", server_pid=child.pid, tf_config=server_env["TF_CONFIG"])
    return child


def wait_for_master_to_finish(cluster: Cluster, log: Any) -> None:
    """The master's TF server listens on 2222 while it trains; keep serving until it is gone."""
    if cluster.is_master or cluster_mod.probe(cluster.master, MASTER_PORT) is not None:
        return
    log.info("parameter_server_waiting_for_master", master=cluster.master, port=MASTER_PORT)
    while cluster_mod.probe(cluster.master, MASTER_PORT) is None:
        time.sleep(_POLL_S)
    log.info("parameter_server_master_done", master=cluster.master)
