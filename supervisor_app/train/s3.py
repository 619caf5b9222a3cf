"""A small S3 GET client over urllib, signed and credentialed by supervisor_app/aws.py.

A training container only ever needs to download one object (the SDK's sourcedir.tar.gz).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from supervisor_app.aws import Credentials, resolve_credentials, sign
from supervisor_app.aws import tls_context as _tls_context
from supervisor_app.config.train import S3Config
from supervisor_app.errors import ConfigError, UserCodeError

_HTTP_TIMEOUT_S = 60.0
_DEFAULT_REGION = "us-east-1"


def parse_url(url: str) -> tuple[str, str]:
    parsed = urllib.parse.urlparse(url)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if parsed.scheme != "s3" or not bucket or not key:
        raise ConfigError(
            f"{url!r} is not an s3://bucket/key URL", hint="use s3://BUCKET/path/sourcedir.tar.gz"
        )
    return bucket, key


def download(url: str, dest: Path, config: S3Config, max_bytes: int = 0) -> None:
    """Download s3://bucket/key to dest; an object over `max_bytes` (0: no limit) is refused."""
    bucket, key = parse_url(url)
    credentials = resolve_credentials(config)
    region = config.region or _DEFAULT_REGION
    try:
        _get(bucket, key, dest, region, credentials, config, max_bytes)
    except _WrongRegion as exc:  # S3 names the bucket's region in the 301/400 answer
        _get(bucket, key, dest, exc.region, credentials, config, max_bytes)


def _copy_within(response: Any, out: Any, origin: str, max_bytes: int) -> None:
    """Copy the body; an archive larger than what it may expand to is refused before (by its
    Content-Length) or while it is downloaded, so it cannot fill the disk."""
    length = response.headers.get("Content-Length", "")
    if max_bytes and length.isdigit() and int(length) > max_bytes:
        raise _too_big(origin, int(length), max_bytes)
    copied = 0
    while chunk := response.read(1024 * 1024):
        copied += len(chunk)
        if max_bytes and copied > max_bytes:
            raise _too_big(origin, copied, max_bytes)
        out.write(chunk)


def _too_big(origin: str, size: int, max_bytes: int) -> UserCodeError:
    return UserCodeError(
        f"refusing to download {origin}: {size} bytes or more, over SMC_MAX_ARCHIVE_BYTES={max_bytes}",
        hint="put large files (data, model weights) in a channel instead of the source dir, or raise "
             "SMC_MAX_ARCHIVE_BYTES (e.g. SMC_MAX_ARCHIVE_BYTES=16G) if the archive is genuine",
    )


class _WrongRegion(Exception):
    def __init__(self, region: str) -> None:
        super().__init__(region)
        self.region = region


def _get(bucket: str, key: str, dest: Path, region: str, creds: Credentials, config: S3Config,
         max_bytes: int = 0) -> None:
    if config.endpoint_url:
        base = config.endpoint_url.rstrip("/")
        url = f"{base}/{bucket}/{_quote(key)}"  # path-style for custom endpoints
    else:
        url = f"https://{bucket}.s3.{region}.amazonaws.com/{_quote(key)}"
    request = urllib.request.Request(url, method="GET", headers=sign("GET", url, region, creds))
    try:
        with (
            urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT_S, context=_tls_context()) as response,
            dest.open("wb") as out,
        ):
            _copy_within(response, out, f"s3://{bucket}/{key}", max_bytes)
    except urllib.error.HTTPError as exc:
        body = exc.read(4096).decode("utf-8", "replace")
        bucket_region = exc.headers.get("x-amz-bucket-region")
        if bucket_region and bucket_region != region and exc.code in (301, 400):
            raise _WrongRegion(bucket_region) from None
        code = _xml_field(body, "Code") or exc.reason
        message = _xml_field(body, "Message")
        raise UserCodeError(
            f"cannot download s3://{bucket}/{key}: HTTP {exc.code} {code}"
            + (f": {message}" if message else ""),
            hint=_hint_for(exc.code, creds),
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserCodeError(
            f"cannot download s3://{bucket}/{key} from {url}: {reason}",
            hint="check the network route to S3 (VPC endpoint, proxy) or AWS_ENDPOINT_URL_S3",
        ) from None


def _hint_for(status: int, creds: Credentials) -> str:
    if status == 404:
        return "check the bucket and key of sagemaker_submit_directory"
    if status == 403:
        return f"the credentials ({creds.source}) are not allowed s3:GetObject on this object"
    return "see the S3 error code above"


def _xml_field(body: str, name: str) -> str:
    match = re.search(rf"<{name}>(.*?)</{name}>", body, re.DOTALL)
    return match.group(1).strip() if match else ""


def _quote(key: str) -> str:
    return urllib.parse.quote(key, safe="/~")


