"""A stand-in model server for engine-mode tests and benches, run with a plain python3.

GET /health: 503 until --warmup-s has passed, then 200 (or --health-status).
POST /invocations (and /v1/predict): echoes the body and every X-Amzn-* / Custom-Attributes header.
POST /stream: chunked answer, --chunks chunks --chunk-delay-s apart (server-sent events style).
POST /sleep?s=N: answers after N seconds.  POST /crash: exits 3 at once.
POST /v1/chat/completions, /v1/completions, /v1/embeddings (OpenAI routes): answer what they got
(path, query, byte count, the body's top-level keys, its first bytes, headers, the method); with
`"stream": true` in the body an SSE answer of --chunks events --chunk-delay-s apart. GET /v1/models
lists one model (404 with --no-openai, which also drops the /v1 routes).
--record FILE: appends one JSON line per /v1 request (what it received). --argv-file FILE: writes
this process's argv as JSON at start.
--exit-code N: exit N at once, after printing to stderr.  --ignore-term: ignore SIGTERM.
LoRA routes, as vLLM (POST /v1/load_lora_adapter, /v1/unload_lora_adapter) and SGLang (POST
/load_lora_adapter, /unload_lora_adapter) name them, {"lora_name", "lora_path"}: a missing field
400, a lora_path that does not exist 404, a name loaded twice 400, unloading an unknown one 404
(vLLM's statuses); --no-lora drops them. --lora-record FILE appends one JSON line per call. An
OpenAI or /invocations body whose `model` names no loaded adapter (nor `<base>:<adapter>` one)
and is not the served model "stand-in" answers 404, as vLLM does, once any adapter was loaded; --load-delay-s slows loads.
"""

import argparse
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

parser = argparse.ArgumentParser(allow_abbrev=False)
parser.add_argument("--port", type=int, default=8000)
parser.add_argument("--warmup-s", type=float, default=0.0)
parser.add_argument("--health-status", type=int, default=200)
parser.add_argument("--exit-code", type=int, default=None)
parser.add_argument("--ignore-term", action="store_true")
parser.add_argument("--chunks", type=int, default=5)
parser.add_argument("--chunk-delay-s", type=float, default=0.2)
parser.add_argument("--work-ms", type=float, default=0.0,
                    help="per /invocations: wait this long, as an engine waiting on its accelerator does")
parser.add_argument("--unhealthy-file", default=None, help="health answers 500 while this file exists")
parser.add_argument("--no-openai", action="store_true")
parser.add_argument("--record", default=None)
parser.add_argument("--argv-file", default=None)
parser.add_argument("--no-lora", action="store_true")
parser.add_argument("--lora-record", default=None)
parser.add_argument("--load-delay-s", type=float, default=0.0)
args, extra_args = parser.parse_known_args()  # flags from SMC_ENGINE_ARGS_FROM land in extra_args
if args.argv_file:
    with open(args.argv_file, "w") as f:
        json.dump(sys.argv[1:], f)
OPENAI = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")

print(f"stand-in engine starting pid={os.getpid()} port={args.port}", flush=True)
if args.exit_code is not None:
    print(f"fatal: stand-in engine refuses to start (exit {args.exit_code})", file=sys.stderr, flush=True)
    sys.exit(args.exit_code)
if args.ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))

STARTED = time.monotonic()
LORA_ROUTES = {"/v1/load_lora_adapter": "load", "/v1/unload_lora_adapter": "unload",
               "/load_lora_adapter": "load", "/unload_lora_adapter": "unload"}
ADAPTERS = {}  # name -> path
EVER_LOADED = []  # one entry once any adapter was loaded


def model_problem(body):
    """Why a body's `model` is not served here (vLLM's 404), or None."""
    if not EVER_LOADED or b'"model"' not in body:
        return None  # before any adapter: every `model` is served (the OpenAI tests send "m")
    try:
        model = json.loads(body).get("model")
    except (ValueError, AttributeError):
        return None
    if model in (None, "stand-in") or model in ADAPTERS:
        return None
    if isinstance(model, str) and model.startswith("stand-in:") and model.split(":", 1)[1] in ADAPTERS:
        return None
    return f"The model `{model}` does not exist."


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per answer and no Nagle delay: headers and body written separately would wait for
    # a delayed ACK (40 ms) on keep-alive connections, which would measure TCP, not the proxy.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024

    def log_message(self, fmt, *a):  # quiet: benches send many requests
        pass

    def _send(self, status, body, ctype="application/json", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

    def do_GET(self):
        path = urlsplit(self.path).path
        if path in ("/health", "/ping"):
            if time.monotonic() - STARTED < args.warmup_s:
                return self._send(503, b'{"status":"warming up"}')
            if args.unhealthy_file and os.path.exists(args.unhealthy_file):
                return self._send(500, b'{"status":"sick"}')
            return self._send(args.health_status, b'{"status":"ok"}')
        if path == "/v1/models" and not args.no_openai:
            return self._send(200, b'{"object":"list","data":[{"id":"stand-in","object":"model"}]}')
        return self._send(404, b'{"error":"not found"}')

    def do_POST(self):
        url = urlsplit(self.path)
        body = self._body()
        if url.path in LORA_ROUTES and not args.no_lora:
            return self._lora(url.path, LORA_ROUTES[url.path], body)
        problem = model_problem(body) if url.path in ("/invocations",) + OPENAI else None
        if problem:
            return self._send(404, json.dumps({"error": {"message": problem, "code": 404}}).encode())
        if url.path in ("/invocations", "/v1/predict"):
            if args.work_ms:
                time.sleep(args.work_ms / 1000)
            echoed = {k: v for k, v in self.headers.items()
                      if k.lower().startswith(("x-amzn-", "custom-attributes")) or k.lower() == "x_custom"}
            session = self.headers.get("X-Amzn-SageMaker-Session-Id")
            extra = {"X-Amzn-SageMaker-New-Session-Id": "sess-1; Expires=2030-01-01T00:00:00Z"} \
                if session == "NEW_SESSION" else {}
            if session and session != "NEW_SESSION":
                extra = {"X-Amzn-SageMaker-Closed-Session-Id": session}
            extra["Custom-Attributes"] = "engine=stand-in"
            seen = {"path": url.path, "query": url.query, "bytes": len(body), "headers": echoed, "pid": os.getpid()}
            if b'"model"' in body:
                seen["model"] = json.loads(body).get("model")
            out = json.dumps(seen).encode()
            return self._send(200, out, headers=extra)
        if url.path in OPENAI and not args.no_openai:
            return self._openai(url, body)
        if url.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(args.chunks):
                data = f"data: {json.dumps({'token': i, 't': time.time()})}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                time.sleep(args.chunk_delay_s)
            self.wfile.write(b"0\r\n\r\n")
            return None
        if url.path == "/sleep":
            time.sleep(float(parse_qs(url.query).get("s", ["1"])[0]))
            return self._send(200, b'{"slept":true}')
        if url.path == "/crash":
            print("stand-in engine crashing on request", file=sys.stderr, flush=True)
            os._exit(3)
        return self._send(404, b'{"error":"not found"}')

    def _openai(self, url, body):
        try:
            document = json.loads(body)
            keys = sorted(document) if isinstance(document, dict) else []
        except ValueError:
            document, keys = None, []
        seen = {"path": url.path, "query": url.query, "method": self.command, "bytes": len(body), "keys": keys,
                "model": document.get("model") if isinstance(document, dict) else None,
                "head": body[:32].decode("utf-8", "replace"),
                "content_type": self.headers.get("Content-Type"),
                "headers": {k: v for k, v in self.headers.items() if k.lower().startswith("x-amzn-")}}
        if args.record:
            with open(args.record, "a") as f:
                f.write(json.dumps(seen) + "\n")
        if not (isinstance(document, dict) and document.get("stream")):
            return self._send(200, json.dumps(seen).encode())
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(args.chunks):
            data = f"data: {json.dumps({'path': url.path, 'token': i, 't': time.time()})}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            time.sleep(args.chunk_delay_s)
        data = b"data: [DONE]\n\n"
        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        return None


    def _lora(self, path, action, body):
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        name = request.get("lora_name") if isinstance(request, dict) else None
        lora_path = request.get("lora_path") if isinstance(request, dict) else None
        if args.lora_record:
            with open(args.lora_record, "a") as f:
                f.write(json.dumps({"path": path, "body": request, "pid": os.getpid()}) + "\n")
        if action == "load":
            time.sleep(args.load_delay_s)
            if not name or not lora_path:
                return self._send(400, b'{"error":{"message":"Both \'lora_name\' and \'lora_path\' must be provided.","code":400}}')
            if name in ADAPTERS:
                return self._send(400, json.dumps({"error": {"message": f"The lora adapter '{name}' has already been loaded.", "code": 400}}).encode())
            if not os.path.isdir(lora_path):
                return self._send(404, json.dumps({"error": {"message": f"No adapter found for {lora_path}", "code": 404}}).encode())
            ADAPTERS[name] = lora_path
            EVER_LOADED.append(name)
            return self._send(200, f"Success: LoRA adapter '{name}' added successfully.".encode(), "text/plain")
        if name not in ADAPTERS:
            return self._send(404, json.dumps({"error": {"message": f"The lora adapter '{name}' cannot be found.", "code": 404}}).encode())
        del ADAPTERS[name]
        return self._send(200, f"Success: LoRA adapter '{name}' removed successfully.".encode(), "text/plain")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True


Server(("127.0.0.1", args.port), Handler).serve_forever()
