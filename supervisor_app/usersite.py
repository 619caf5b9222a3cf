"""Make the embedded interpreter see user code the way CPython's `site` would.

A frozen interpreter starts isolated: PYTHONPATH, site-packages, .pth files and sitecustomize
are all ignored. smc applies them itself. User paths go IN FRONT of the bundle, so a user's own
flask or numpy wins over what smc bundles (the bundle is smc's runtime, not the user's).
"""

from __future__ import annotations

import os
import site
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SiteOptions:
    ignore_environment: bool = False  # -E
    no_user_site: bool = False  # -s
    isolated: bool = False  # -I: -E, -s and no script dir on sys.path


def site_packages(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"


def user_site(environ: Mapping[str, str]) -> Path | None:
    home = environ.get("HOME")
    if not home:
        return None
    return site_packages(Path(home) / ".local")


def prepare(prefix: Path, environ: Mapping[str, str], options: SiteOptions = SiteOptions()) -> None:
    """Put PYTHONPATH, the smc prefix's site-packages and the user site in front of the bundle."""
    ignore_env = options.ignore_environment or options.isolated
    bundle = list(sys.path)
    front: list[str] = []
    if not ignore_env:
        front += [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    # Point the interpreter's prefix at a persistent place: pip installs there by default,
    # where plain CPython would install into its own site-packages.
    sys.prefix = sys.exec_prefix = str(prefix)
    sys.base_prefix = sys.base_exec_prefix = str(prefix)
    site_dirs = [site_packages(prefix)]
    no_user = options.no_user_site or options.isolated or (not ignore_env and environ.get("PYTHONNOUSERSITE"))
    if not no_user:
        user = user_site(environ)
        if user is not None:
            site_dirs.append(user)
    sys.path[:] = front
    known = set(front)
    for directory in site_dirs:
        if directory.is_dir():
            # addsitedir also runs the directory's .pth files, as site does at start-up.
            site.addsitedir(str(directory), known)
    sys.path.extend(p for p in bundle if p not in sys.path)
    _import_customize("sitecustomize")
    if not no_user:
        _import_customize("usercustomize")


def _import_customize(name: str) -> None:
    try:
        __import__(name)
    except ImportError as exc:
        if exc.name != name:
            raise
