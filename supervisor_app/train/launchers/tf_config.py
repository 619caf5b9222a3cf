"""TF_CONFIG for TensorFlow distribution, rendered as sagemaker-tensorflow-training renders it
(json.dumps with its default separators, keys in its insertion order).

Parameter servers (`sagemaker_parameter_server_enabled`, more than one host): the first host is
`master` (port 2222), the others `worker` (2222), and every host also a `ps` (2223).
Multi-worker mirrored (`sagemaker_multi_worker_mirrored_strategy_enabled`): every host a
`worker` on port 8890.
"""

from __future__ import annotations

import json
from typing import Any


def parameter_server(hosts: list[str], current_host: str, ps_task: bool = False) -> dict[str, Any]:
    workers = hosts[1:]
    servers = hosts if len(hosts) > 1 else []
    cluster: dict[str, list[str]] = {"master": [f"{hosts[0]}:2222"]}
    if servers:
        cluster["ps"] = [f"{h}:2223" for h in servers]
    if workers:
        cluster["worker"] = [f"{h}:2222" for h in workers]
    if ps_task:
        if not servers:
            raise ValueError("a single-host job has no parameter servers")
        task = {"index": servers.index(current_host), "type": "ps"}
    elif current_host == hosts[0]:
        task = {"index": 0, "type": "master"}
    else:
        task = {"index": workers.index(current_host), "type": "worker"}
    return {"cluster": cluster, "environment": "cloud", "task": task}


def multi_worker_mirrored(hosts: list[str], current_host: str) -> dict[str, Any]:
    return {
        "cluster": {"worker": [f"{h}:8890" for h in hosts]},
        "environment": "cloud",
        "task": {"index": hosts.index(current_host), "type": "worker"},
    }


def render(config: dict[str, Any]) -> str:
    return json.dumps(config)
