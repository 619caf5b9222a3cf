"""A local stand-in for AWS CodeArtifact (moto has no CodeArtifact): GetAuthorizationToken and
GetRepositoryEndpoint that REJECT a request unless its SigV4 signature verifies (recomputed with
botocore's own signer from the headers the request says it signed), plus the PyPI simple index
behind that endpoint, which requires the token as HTTP basic auth, as the real one does."""

from __future__ import annotations

import base64
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS_KEY, SECRET_KEY = "AKIAFAKECODEARTIFACT", "fake/secret+key"
TOKEN = "eyJ2ZXIiOjF9.token/with+chars="
DOMAIN, OWNER, REPO, REGION = "my-domain", "123456789012", "my-repo", "eu-west-1"
ARN = f"arn:aws:codeartifact:{REGION}:{OWNER}:repository/{DOMAIN}/{REPO}"


class FakeCodeArtifact:
    def __init__(self, wheels: Path, tls: ssl.SSLContext | None = None) -> None:
        """tls: a server context, to answer on https:// (API and index) instead of http://."""
        self.wheels = wheels
        self.calls: list[tuple[str, str, int]] = []  # (method, path, status)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.handle(self)

            def do_POST(self):
                owner.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self) -> dict[str, str]:
        return {"CA_REPOSITORY_ARN": ARN, "AWS_ENDPOINT_URL_CODEARTIFACT": self.url, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_EC2_METADATA_DISABLED": "true"}

    # -- request handling ----------------------------------------------------------------------
    def handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        path, _, query = req.path.partition("?")
        if path.startswith("/v1/"):
            status, answer = self.api(req, path, query, body)
            data, kind = json.dumps(answer).encode(), "application/json"
        else:
            status, data, kind = self.index(req, path)
        self.calls.append((req.command, path, status))
        req.send_response(status)
        req.send_header("Content-Type", kind)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def api(self, req, path: str, query: str, body: bytes) -> tuple[int, dict]:
        problem = self.signature_problem(req, body)
        if problem:
            return 403, {"message": problem}
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        if params.get("domain") != DOMAIN or params.get("domain-owner") != OWNER:
            return 404, {"message": f"no domain {params.get('domain')} owned by {params.get('domain-owner')}"}
        if req.command == "POST" and path == "/v1/authorization-token":
            return 200, {"authorizationToken": TOKEN, "expiration": 1900000000}
        if req.command == "GET" and path == "/v1/repository/endpoint":
            if params.get("repository") != REPO or params.get("format") != "pypi":
                return 404, {"message": "no such repository or format"}
            return 200, {"repositoryEndpoint": f"{self.url}/pypi/{REPO}/"}
        return 404, {"message": f"no route {req.command} {path}"}

    def signature_problem(self, req, body: bytes) -> str:
        auth = req.headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return "missing SigV4 Authorization"
        fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        access_key, day, region, service, _ = fields["Credential"].split("/")
        if (access_key, region, service) != (ACCESS_KEY, REGION, "codeartifact"):
            return f"wrong credential scope {fields['Credential']}"
        signed = fields["SignedHeaders"].split(";")
        request = AWSRequest(method=req.command, url=f"http://{req.headers['Host']}{req.path}", data=body,
                             headers={name: req.headers[name] for name in signed})
        request.context["timestamp"] = req.headers["X-Amz-Date"]
        signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "codeartifact", REGION)
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        return "" if expected == fields["Signature"] else "The request signature we calculated does not match"

    def index(self, req, path: str) -> tuple[int, bytes, str]:
        wanted = "Basic " + base64.b64encode(f"aws:{TOKEN}".encode()).decode()
        if req.headers.get("Authorization") != wanted:
            return 401, b"token required", "text/plain"
        prefix = f"/pypi/{REPO}/simple/"
        if path.startswith(prefix):
            project = path[len(prefix):].strip("/").replace("-", "_").lower()
            links = "".join(f'<a href="/files/{w.name}">{w.name}</a>\n' for w in sorted(self.wheels.glob("*.whl"))
                            if w.name.lower().startswith(project + "-"))
            return (200 if links else 404), f"<html><body>{links}</body></html>".encode(), "text/html"
        if path.startswith("/files/") and (self.wheels / path[len("/files/"):]).is_file():
            return 200, (self.wheels / path[len("/files/"):]).read_bytes(), "application/octet-stream"
        return 404, b"not found", "text/plain"
