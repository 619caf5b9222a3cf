"""Write a `docker save` archive of one root file system tarball, with the architecture given, to
stdout (pipe it to `docker load`):

    python3 build/arm64/load_image.py ROOTFS.tar ARCH TAG [LABEL=VALUE ...] | docker load

Why not `docker import --platform linux/arm64`: Docker 20.10 (Debian 12's) accepts the flag and
still records the host's architecture, so `docker build --platform linux/arm64 FROM` it fails and
`smc doctor --image` reads the wrong one. The image config written here says what the files are.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def image_config(diff_id: str, architecture: str, labels: dict[str, str]) -> bytes:
    return json.dumps({
        "architecture": architecture,
        "os": "linux",
        "config": {"Env": [f"PATH={_PATH}"], "Cmd": ["/bin/bash"], "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "build/arm64/load_image.py"}],
    }, sort_keys=True).encode()


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def main(argv: list[str]) -> int:
    rootfs, architecture, tag, *label_args = argv
    labels = dict(arg.split("=", 1) for arg in label_args)
    config = image_config(sha256_of(rootfs), architecture, labels)
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as archive:
        _add_bytes(archive, config_name, config)
        _add_bytes(archive, "manifest.json", manifest)
        archive.add(rootfs, arcname="layer.tar")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
