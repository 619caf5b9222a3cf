"""A model server written against Python's standard library alone, run as smc's engine with smc's
own Python (`smc python engine.py`): GET /health answers 200 once the model is loaded; POST
/invocations answers JSON."""

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=8000)
args = parser.parse_args()

MODEL = {"weights": [0.5, -1.0, 2.0]}  # a real engine loads its model here, before it listens


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: nginx reuses its connections to the engine

    def answer(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            return self.answer(200, {"status": "ready"})
        return self.answer(404, {"error": "no such path"})

    def do_POST(self):
        data = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        features = data.get("features", [])
        score = sum(w * x for w, x in zip(MODEL["weights"], features))
        return self.answer(200, {"score": score})

    def log_message(self, fmt, *fields):  # smc's nginx writes one access line per request
        pass


ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
