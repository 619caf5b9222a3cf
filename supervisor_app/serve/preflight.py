"""What `smc serve` checks before it starts anything, and `smc doctor` checks the same way:
the nginx binary it will run, that the port is free; and the temp dir nginx workers write to."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

from supervisor_app.config.serve import ServeConfig
from supervisor_app.errors import BootError


def find_nginx(config: ServeConfig) -> str:
    if config.nginx:
        path = Path(config.nginx)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BootError(f"SMC_NGINX={config.nginx} is not an executable file",
                            hint="point SMC_NGINX at the nginx binary (Debian/Ubuntu: apt-get install -y nginx-light), "
                                 "or unset it to use nginx from PATH")
        return str(path)
    found = shutil.which("nginx", path=config.path_env)
    if not found:
        raise BootError(
            "nginx not found on PATH",
            hint="install it in the image (Debian/Ubuntu: apt-get install -y nginx-light; Alpine: apk add nginx) "
            "or set SMC_NGINX to its path",
        )
    return found


# nginx's -e (the error log used before the config is read) came in 1.19.5; Debian 11 and Ubuntu
# 20.04 ship 1.18, which refuses the whole command line for it ('invalid option: "e"').
ERROR_LOG_OPTION_SINCE = (1, 19, 5)


def nginx_argv(nginx_path: str, run_dir: Path, conf_path: Path, env: Mapping[str, str]) -> list[str]:
    """The command line of nginx. `-e stderr` keeps nginx from opening its compiled-in error log
    (/var/log/nginx/error.log: unwritable in a read-only root or for another user) at start; an
    older nginx opens it, and at worst says so in one alert line, then logs to stderr as the
    config says."""
    version = nginx_version(nginx_path, env)
    early_log = ["-e", "stderr"] if version is None or version >= ERROR_LOG_OPTION_SINCE else []
    return [nginx_path, *early_log, "-p", str(run_dir), "-c", str(conf_path)]


def nginx_version(nginx_path: str, env: Mapping[str, str]) -> tuple[int, int, int] | None:
    """(major, minor, patch) from `nginx -v` (~3 ms), or None when it does not say."""
    try:
        done = subprocess.run([nginx_path, "-v"], capture_output=True, text=True, timeout=10, env=dict(env),
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None  # the start itself will fail and say why
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", done.stderr + done.stdout)
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def check_port_free(port: int) -> None:
    """Fail with a clear message before starting anything if another process listens on the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nginx does: TIME_WAIT is fine
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as exc:
            raise BootError(
                f"port {port} is already in use ({exc.strerror})",
                hint="stop the other server on that port, or set SAGEMAKER_BIND_TO_PORT to a free port",
            ) from None


def give_to_nginx_workers(directory: Path) -> None:
    """nginx started as root runs its workers as `nobody`; they buffer large bodies here."""
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return
    os.chown(directory, nobody.pw_uid, nobody.pw_gid)
