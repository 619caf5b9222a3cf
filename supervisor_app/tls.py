"""The CA certificates of the image, for the OpenSSL bundled in smc.

The bundled OpenSSL looks where it was configured to look (its OPENSSLDIR: Debian's layout,
cert.pem and a hashed certs/ directory). RHEL-like images (Amazon Linux, RHEL/UBI, CentOS,
Fedora) and SUSE keep one bundle file elsewhere, so there smc's S3 and CodeArtifact requests,
pip and user code in `smc python` would trust no CA at all (or only pip's certifi, which lacks a
company's own CA that the image added). When the user has not chosen (SSL_CERT_FILE or
SSL_CERT_DIR) and OpenSSL's defaults hold nothing, smc sets SSL_CERT_FILE to the first bundle
that exists: OpenSSL reads the variable at every context it sets up, in this process and in each
re-run of smc (the gunicorn master, sys.executable, pip's children), which inherit it.

Programs that are not smc (nginx, the image's python3 with its own OpenSSL, conda's) must see the
environment as the user set it: `own_setting_removed` takes the variable out again, but only
when it is still the value smc set (_MARK records it), never a user's own SSL_CERT_FILE.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, MutableMapping

FILE_VAR, DIR_VAR = "SSL_CERT_FILE", "SSL_CERT_DIR"
_MARK = "_SMC_SSL_CERT_FILE"  # the value smc set; a user's own SSL_CERT_FILE has no mark

# One file with every trusted CA, by distribution; the first that exists wins.
CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine, Gentoo (ca-certificates)
    "/etc/pki/tls/certs/ca-bundle.crt",  # RHEL/UBI, CentOS, Fedora, Amazon Linux
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # what RHEL's update-ca-trust writes
    "/etc/ssl/ca-bundle.pem",  # SUSE, openSUSE
    "/etc/ssl/cert.pem",  # Alpine, Arch
    "/etc/pki/tls/cert.pem",  # older Fedora and RHEL
)

# The names OpenSSL looks up in a certificate directory: the subject hash, a dot, a number.
_HASHED_NAME = re.compile(r"^[0-9a-f]{8}\.[0-9]+$")


def use_distribution_ca_bundle(environ: MutableMapping[str, str]) -> str | None:
    """Point the bundled OpenSSL at the image's CA bundle when it would find none itself.
    Returns the bundle chosen, or None when nothing was changed."""
    if FILE_VAR in environ or DIR_VAR in environ:
        return None  # the user's choice, or smc's own inherited from the smc that started this one
    import ssl  # here, not at import: loading libssl is not free and `smc version` needs none

    defaults = ssl.get_default_verify_paths()
    chosen = ca_bundle_to_use(defaults.cafile, defaults.capath, CA_BUNDLES)
    if chosen is not None:
        environ[FILE_VAR] = chosen
        environ[_MARK] = chosen
    return chosen


def ca_bundle_to_use(default_file: str | None, default_dir: str | None, candidates: Iterable[str]) -> str | None:
    """None when OpenSSL's own defaults hold certificates, else the first candidate file."""
    if _non_empty_file(default_file) or _holds_hashed_certs(default_dir):
        return None
    return next((path for path in candidates if _non_empty_file(path)), None)


def own_setting_removed(env: dict[str, str]) -> dict[str, str]:
    """`env` without the SSL_CERT_FILE that smc set (and its mark); a user's own stays."""
    own = env.pop(_MARK, None)
    if own is not None and env.get(FILE_VAR) == own:
        del env[FILE_VAR]
    return env


def _non_empty_file(path: str | None) -> bool:
    try:
        return path is not None and os.path.isfile(path) and os.path.getsize(path) > 0
    except OSError:
        return False


def _holds_hashed_certs(directory: str | None) -> bool:
    """RHEL's /etc/ssl/certs (a link to /etc/pki/tls/certs) exists but holds only bundle files,
    which OpenSSL never opens from a directory: only hashed names count."""
    if not directory:
        return False
    try:
        with os.scandir(directory) as entries:
            return any(_HASHED_NAME.match(entry.name) for entry in entries)
    except OSError:
        return False
