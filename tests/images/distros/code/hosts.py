"""Two-host entry point: each host resolves every host of the job by name, then the second
connects to the first over the job's network and they exchange their names."""

import json
import os
import socket
import time

PORT = 7777
hosts = json.loads(os.environ["SM_HOSTS"])
me = os.environ["SM_CURRENT_HOST"]
addresses = {host: socket.gethostbyname(host) for host in hosts}
result = {"host": me, "addresses": addresses}
if me == hosts[0]:
    with socket.create_server(("", PORT)) as server:
        server.settimeout(60)
        conn, _ = server.accept()
        with conn:
            result["received"] = conn.recv(100).decode()
            conn.sendall(f"hello from {me}".encode())
else:
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = socket.create_connection((hosts[0], PORT), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with conn:
        conn.sendall(me.encode())
        result["received"] = conn.recv(100).decode()
with open(os.path.join(os.environ["SM_MODEL_DIR"], "hosts.json"), "w") as f:
    json.dump(result, f)
print("hosts:", json.dumps(result))
