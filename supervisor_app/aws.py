"""AWS request signing (Signature Version 4) and the credential chain, over urllib: what smc's
small S3 client (train/s3.py, train/s3_upload.py) and the CodeArtifact client (codeartifact.py)
share. boto3/botocore would add ~20 MB of data files unpacked on every start of the binary.

Credentials, first found wins: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY(/AWS_SESSION_TOKEN), the
container credential endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI, what
SageMaker and ECS provide), then the instance metadata service (IMDSv2).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import ssl
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from supervisor_app.config.train import S3Config
from supervisor_app.errors import UserCodeError

_CONTAINER_HOST = "http://169.254.170.2"
_IMDS_TIMEOUT_S = 2.0
_HTTP_TIMEOUT_S = 60.0
_UNSIGNED = "UNSIGNED-PAYLOAD"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str = ""
    source: str = ""


_tls: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
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
