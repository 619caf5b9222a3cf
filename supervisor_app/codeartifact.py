"""CA_REPOSITORY_ARN: pip installs (train and serve) from an AWS CodeArtifact repository.

As sagemaker-inference 1.10 and sagemaker-training do: GetAuthorizationToken and
GetRepositoryEndpoint (format pypi) for the repository the ARN names, then
`pip install --index-url https://aws:TOKEN@DOMAIN-OWNER.d.codeartifact.REGION.amazonaws.com/pypi/REPO/simple/`.
Requests are signed by smc's small SigV4 client (aws.py) with the usual credentials
(environment, container endpoint, instance metadata); AWS_ENDPOINT_URL_CODEARTIFACT (or
AWS_ENDPOINT_URL) points them elsewhere, e.g. a VPC endpoint or a test server.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from supervisor_app import aws
from supervisor_app.errors import ConfigError, UserCodeError

_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):codeartifact:(?P<region>[a-z0-9-]+):(?P<owner>\d{12})"
    r":repository/(?P<domain>[a-z][a-z0-9-]{1,49})/(?P<repository>[A-Za-z0-9][A-Za-z0-9._-]{1,99})$"
)
_TIMEOUT_S = 30.0
_SERVICE = "codeartifact"


@dataclass(frozen=True)
class Repository:
    partition: str
    region: str
    owner: str
    domain: str
    name: str


def parse_arn(arn: str) -> Repository:
    match = _ARN.match(arn.strip())
    if not match:
        raise ConfigError(
            f"CA_REPOSITORY_ARN={arn!r} is not a CodeArtifact repository ARN",
            hint="use arn:aws:codeartifact:REGION:ACCOUNT_ID:repository/DOMAIN/REPOSITORY "
            "(the repository's ARN from the CodeArtifact console or `aws codeartifact describe-repository`)",
        )
    g = match.groupdict()
    return Repository(g["partition"], g["region"], g["owner"], g["domain"], g["repository"])


def endpoint(repo: Repository, environ: Mapping[str, str]) -> str:
    given = environ.get("AWS_ENDPOINT_URL_CODEARTIFACT") or environ.get("AWS_ENDPOINT_URL")
    if given:
        return given.rstrip("/")
    suffix = "amazonaws.com.cn" if repo.partition == "aws-cn" else "amazonaws.com"
    return f"https://codeartifact.{repo.region}.{suffix}"


def authenticated_index(repository_endpoint: str, token: str) -> str:
    """https://host/pypi/repo/ -> https://aws:TOKEN@host/pypi/repo/simple/ (what pip needs)."""
    parts = urllib.parse.urlsplit(repository_endpoint)
    path = parts.path.rstrip("/") + "/simple/"
    netloc = f"aws:{urllib.parse.quote(token, safe='')}@{parts.netloc}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, "", ""))


def redact(url: str) -> str:
    """The index URL carries the token as its password: never log it."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        rest = "aws:***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


def index_url(environ: Mapping[str, str], log: Any) -> str:
    """The authenticated pip index for CA_REPOSITORY_ARN; ConfigError/UserCodeError say what failed."""
    repo = parse_arn(environ.get("CA_REPOSITORY_ARN", ""))
    creds = _credentials(environ)
    base = endpoint(repo, environ)
    query = {"domain": repo.domain, "domain-owner": repo.owner}
    token = _call("POST", f"{base}/v1/authorization-token?{urllib.parse.urlencode(query)}", repo, creds,
                  "GetAuthorizationToken")["authorizationToken"]
    query.update({"repository": repo.name, "format": "pypi"})
    repository_endpoint = _call("GET", f"{base}/v1/repository/endpoint?{urllib.parse.urlencode(query)}", repo,
                                creds, "GetRepositoryEndpoint")["repositoryEndpoint"]
    url = authenticated_index(repository_endpoint, token)
    log.info("codeartifact_index", domain=repo.domain, domain_owner=repo.owner, repository=repo.name,
             region=repo.region, index=redact(url), credentials=creds.source)
    return url


def _credentials(environ: Mapping[str, str]) -> Any:
    from supervisor_app.config.settings import read_settings
    from supervisor_app.config.train import S3_SETTINGS, S3Config

    values = read_settings(S3_SETTINGS, environ)
    try:
        return aws.resolve_credentials(S3Config(region="", **values))
    except UserCodeError:
        raise UserCodeError(
            "no AWS credentials to get a CodeArtifact token for CA_REPOSITORY_ARN",
            hint="on SageMaker the execution role provides them (it needs codeartifact:GetAuthorizationToken, "
            "codeartifact:GetRepositoryEndpoint, codeartifact:ReadFromRepository and sts:GetServiceBearerToken); "
            "locally set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)",
        ) from None


def _call(method: str, url: str, repo: Repository, creds: Any, action: str) -> dict[str, Any]:
    body = b"" if method == "POST" else None
    headers = aws.sign(method, url, repo.region, creds, service=_SERVICE, payload=b"")
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S, context=aws.tls_context()) as response:
            return json.loads(response.read().decode())
    except urllib.error.HTTPError as exc:
        detail = exc.read(2000).decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("message", detail)
        except (ValueError, AttributeError):
            pass
        raise UserCodeError(
            f"CodeArtifact {action} for {repo.domain}/{repo.name} failed: HTTP {exc.code}: {detail}",
            hint="check CA_REPOSITORY_ARN and that the role may call codeartifact:" + action,
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UserCodeError(
            f"CodeArtifact {action} at {url.split('?')[0]} failed: {getattr(exc, 'reason', exc)}",
            hint="check the network route to CodeArtifact (a VPC endpoint for codeartifact.api) "
            "or AWS_ENDPOINT_URL_CODEARTIFACT",
        ) from None
