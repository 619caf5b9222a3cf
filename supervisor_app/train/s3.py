"""A small S3 GET client: SigV4 over urllib, credentials from the usual AWS places.

boto3/botocore would add ~20 MB of data files unpacked on every start of the binary; a training
container only ever needs to download one object (the SDK's sourcedir.tar.gz).

Credentials, first found wins: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY(/AWS_SESSION_TOKEN), the
container credential endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI, what
SageMaker and ECS provide), then the instance metadata service (IMDSv2).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor_app.config.train import S3Config
from supervisor_app.errors import ConfigError, UserCodeError

_CONTAINER_HOST = "http://169.254.170.2"
_IMDS_TIMEOUT_S = 2.0
_HTTP_TIMEOUT_S = 60.0
_UNSIGNED = "UNSIGNED-PAYLOAD"
_DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str = ""
    source: str = ""


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


_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    """The system CA store, or pip's bundled certifi when the image has none (minimal images)."""
    global _tls
    if _tls is None:
        context = ssl.create_default_context()
        if not context.cert_store_stats().get("x509_ca"):
            try:
                from pip._vendor import certifi

                context.load_verify_locations(certifi.where())
            except (ImportError, OSError):
                pass
        _tls = context
    return _tls


# ---- SigV4 ----------------------------------------------------------------------------------


def sign(
    method: str, url: str, region: str, creds: Credentials, now: datetime.datetime | None = None,
    service: str = "s3", payload: bytes | None = None,
) -> dict[str, str]:
    """Headers for a request signed with AWS Signature Version 4: S3 with an unsigned payload by
    default; other services (codeartifact) sign the payload's hash."""
    now = now or datetime.datetime.now(datetime.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    parsed = urllib.parse.urlsplit(url)
    host = parsed.netloc
    payload_hash = _UNSIGNED if payload is None else hashlib.sha256(payload).hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    if creds.session_token:
        headers["x-amz-security-token"] = creds.session_token
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            parsed.path or "/",
            _canonical_query(parsed.query),
            "".join(f"{k}:{headers[k].strip()}\n" for k in sorted(headers)),
            signed,
            payload_hash,
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(("AWS4" + creds.secret_access_key).encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    result = {k: v for k, v in headers.items() if k != "host"}
    result["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return result


def _canonical_query(query: str) -> str:
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{_quote_all(k)}={_quote_all(v)}" for k, v in sorted(pairs))


def _quote_all(text: str) -> str:
    return urllib.parse.quote(text, safe="~")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


# ---- credentials ----------------------------------------------------------------------------


def resolve_credentials(config: S3Config) -> Credentials:
    if config.access_key_id and config.secret_access_key:
        return Credentials(
            config.access_key_id, config.secret_access_key, config.session_token, "environment"
        )
    if config.container_credentials_full_uri or config.container_credentials_relative_uri:
        return _container_credentials(config)
    if not config.imds_disabled:
        found = _imds_credentials(config.imds_endpoint)
        if found is not None:
            return found
    raise UserCodeError(
        "no AWS credentials to download the s3:// submit directory",
        hint="on SageMaker the job's role provides them; locally set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or put the code in the code directory",
    )


def _container_credentials(config: S3Config) -> Credentials:
    url = config.container_credentials_full_uri or _CONTAINER_HOST + config.container_credentials_relative_uri
    headers = {}
    token = config.container_authorization_token
    if not token and config.container_authorization_token_file:
        token = Path(config.container_authorization_token_file).read_text().strip()
    if token:
        headers["Authorization"] = token
    try:
        data = _get_json(url, headers, _HTTP_TIMEOUT_S)
    except (OSError, ValueError) as exc:
        raise UserCodeError(
            f"cannot get credentials from the container credential endpoint {url}: {exc}",
            hint="check AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI",
        ) from None
    return Credentials(
        data["AccessKeyId"], data["SecretAccessKey"], data.get("Token", ""), "container endpoint"
    )


def _imds_credentials(endpoint: str) -> Credentials | None:
    base = endpoint.rstrip("/")
    try:
        token_request = urllib.request.Request(
            f"{base}/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"}
        )
        with urllib.request.urlopen(token_request, timeout=_IMDS_TIMEOUT_S) as response:
            token = response.read().decode()
        headers = {"X-aws-ec2-metadata-token": token}
        roles_url = f"{base}/latest/meta-data/iam/security-credentials/"
        request = urllib.request.Request(roles_url, headers=headers)
        with urllib.request.urlopen(request, timeout=_IMDS_TIMEOUT_S) as response:
            role = response.read().decode().split("\n")[0].strip()
        data = _get_json(roles_url + role, headers, _IMDS_TIMEOUT_S)
    except (OSError, ValueError):
        return None
    return Credentials(
        data["AccessKeyId"], data["SecretAccessKey"], data.get("Token", ""), "instance metadata"
    )


def _get_json(url: str, headers: dict[str, str], timeout_s: float) -> dict:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read().decode())
