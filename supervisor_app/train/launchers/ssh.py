"""What MPI needs from SSH, made at start inside the container: a host key, the job's shared
login key, an sshd config and a client config, all in one private directory. The image brings
the programs (Debian: openssh-server, which pulls in openssh-client); smc never touches
/etc/ssh or ~/.ssh.

The shared key. All hosts must hold the same key, and there is no registry or shared volume to
hand one out. So, unless SMC_MPI_SSH_KEY_FILE names a key (a mounted secret, the same on every
host), the key is derived: Ed25519 seed = HMAC-SHA256(SMC_MPI_SSH_SECRET, job name + hosts).
Without a secret anyone who can reach the job's port 22 and knows the job and host names can
derive it; on SageMaker only the job's own hosts share that network. Host keys are random per
container and not checked (StrictHostKeyChecking no, as in sagemaker-training).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor_app import process
from supervisor_app.config.dist import DistConfig
from supervisor_app.errors import BootError, ConfigError
from supervisor_app.train.launchers import background, ed25519

SSHD_PATHS = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
SSHD_PACKAGE = "openssh-server"
MPI_PACKAGE = "openmpi-bin"
# A dead host is noticed within ServerAliveInterval * ServerAliveCountMax seconds.
_ALIVE_INTERVAL_S = 3
_ALIVE_COUNT = 3
_CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class SshFiles:
    directory: Path
    client_config: Path
    sshd_config: Path
    key_origin: str  # "file" | "derived" | "derived-with-secret"

    def ssh_command(self, host: str, *remote: str) -> list[str]:
        return ["ssh", "-F", str(self.client_config), host, *remote]


def find_sshd(path_env: str | None) -> str | None:
    for candidate in SSHD_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("sshd", path=path_env)


def derive_seed(secret: str, job_name: str, hosts: tuple[str, ...]) -> bytes:
    message = json.dumps({"job": job_name, "hosts": list(hosts)}, sort_keys=True).encode()
    return hmac.new(b"smc-mpi-ssh\0" + secret.encode(), message, hashlib.sha256).digest()


def prepare(directory: Path, dist: DistConfig, job_name: str, hosts: tuple[str, ...]) -> SshFiles:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    key = directory / "id_ed25519"
    authorized = directory / "authorized_keys"
    if dist.ssh_key_file:
        origin = "file"
        shutil.copyfile(dist.ssh_key_file, key)
        key.chmod(0o600)
        authorized.write_text(_public_of(key, dist.ssh_key_file))
    else:
        origin = "derived-with-secret" if dist.ssh_secret else "derived"
        seed = derive_seed(dist.ssh_secret, job_name, hosts)
        _write_private(key, ed25519.private_file(seed, "smc-mpi"))
        authorized.write_text(ed25519.public_line(seed, "smc-mpi"))
    host_key = directory / "ssh_host_ed25519_key"
    _write_private(host_key, ed25519.private_file(os.urandom(32), "smc-host"))
    sshd_config = directory / "sshd_config"
    sshd_config.write_text(
        f"Port {dist.ssh_port}\n"
        f"HostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized}\n"
        f"PidFile {directory / 'sshd.pid'}\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        "UsePAM no\n"
        # The files live under a tmp dir whose parents are world-writable.
        "StrictModes no\n"
        "LogLevel ERROR\n"
        f"ClientAliveInterval {_ALIVE_INTERVAL_S}\n"
        f"ClientAliveCountMax {_ALIVE_COUNT}\n"
    )
    client_config = directory / "ssh_config"
    client_config.write_text(
        "Host *\n"
        f"  Port {dist.ssh_port}\n"
        f"  IdentityFile {key}\n"
        "  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n"
        "  BatchMode yes\n"
        "  LogLevel ERROR\n"
        f"  ConnectTimeout {_CONNECT_TIMEOUT_S}\n"
        f"  ServerAliveInterval {_ALIVE_INTERVAL_S}\n"
        f"  ServerAliveCountMax {_ALIVE_COUNT}\n"
    )
    return SshFiles(directory, client_config, sshd_config, origin)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _public_of(key: Path, origin: str) -> str:
    # The image's ssh-keygen with the image's libcrypto: the bundle's library path would hand it
    # smc's OpenSSL 3.0, older than what Debian 13's or Amazon Linux 2023's ssh-keygen links against.
    done = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, timeout=30,
                          check=False, env=process.foreign_env(os.environ))
    if done.returncode != 0 or not done.stdout.startswith("ssh-"):
        raise ConfigError(
            f"SMC_MPI_SSH_KEY_FILE={origin}: not an unencrypted OpenSSH private key "
            f"({done.stderr.strip() or 'ssh-keygen -y failed'})",
            hint="make one with `ssh-keygen -t ed25519 -N '' -f key` and mount the same file on every host",
        )
    return done.stdout


def start_sshd(sshd: str, files: SshFiles, environ: dict[str, str], log: Any) -> subprocess.Popen:
    # sshd refuses to start without its privilege separation directory (a non-root user cannot
    # make it; sshd then says so itself).
    try:
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("sshd_dir_not_made", path="/run/sshd", error=exc.strerror)
    command = [sshd, "-D", "-e", "-f", str(files.sshd_config)]
    child = background.start(command, environ)
    log.info("sshd_started", sshd_pid=child.pid, command=command, key=files.key_origin)
    return child


def check_sshd_alive(child: subprocess.Popen, port: int) -> None:
    if child.poll() is not None:
        raise BootError(
            f"sshd exited at start with code {child.returncode} (port {port})",
            hint="see sshd's message above; another sshd on the port? set SMC_MPI_SSH_PORT",
        )
