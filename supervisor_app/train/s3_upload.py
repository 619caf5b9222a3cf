"""PUT one file to S3 with smc's SigV4 signer (train/s3.py): streamed from disk, unsigned payload."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from supervisor_app.config.train import S3Config
from supervisor_app.train import s3

_TIMEOUT_S = 120.0


class UploadError(Exception):
    pass


def put_file(path: Path, bucket: str, key: str, region: str, creds: s3.Credentials, config: S3Config) -> int:
    """Upload path to s3://bucket/key; returns the bytes sent. UploadError says why not."""
    if config.endpoint_url:
        url = f"{config.endpoint_url.rstrip('/')}/{bucket}/{s3._quote(key)}"  # path-style for custom endpoints
    else:
        url = f"https://{bucket}.s3.{region}.amazonaws.com/{s3._quote(key)}"
    with path.open("rb") as body:
        size = path.stat().st_size
        headers = s3.sign("PUT", url, region, creds)
        headers["Content-Length"] = str(size)
        # urllib would label the body a form (application/x-www-form-urlencoded)
        headers["Content-Type"] = "application/octet-stream"
        request = urllib.request.Request(url, data=body, method="PUT", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S, context=s3._tls_context()) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(2000).decode("utf-8", "replace")
            code = s3._xml_field(detail, "Code") or exc.reason
            raise UploadError(f"HTTP {exc.code} {code}: {s3._xml_field(detail, 'Message')}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise UploadError(str(getattr(exc, "reason", exc))) from None
    return size
