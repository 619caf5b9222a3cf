"""The MHCS side of the differential: a tiny FastAPI app bootstrapped with
model-hosting-container-standards the way vLLM's SageMaker entrypoint wires it.

Run by the MHCS venv's python (tests/mhcs/venv.py), never imported by pytest:

    python app.py --port P [--engine-url http://127.0.0.1:E]

MHCS reads SAGEMAKER_ENABLE_STATEFUL_SESSIONS / _SESSIONS_EXPIRATION / _SESSIONS_PATH when it is
imported, so the runner sets them in this process's environment. Wiring, as vLLM does it:
/invocations is the registered invocation handler under `stateful_session_manager()` (no body
path: the id is checked, never passed on) and `inject_adapter_id(adapter_path="model")`; the
adapter routes are `register_load_adapter_handler({"lora_name": "body.name", "lora_path":
"body.src"})` and `register_unload_adapter_handler({"lora_name": "path_params.adapter_name"})`.

With --engine-url the handlers call the engine as vLLM's own routes would: invocations go to
POST /v1/chat/completions, loads to POST /v1/load_lora_adapter, unloads to
POST /v1/unload_lora_adapter; the engine's status and body come back unchanged (MHCS then
rewrites a 200 from the adapter routes into its own text). Without it, /invocations echoes the
body it got (after MHCS's transforms) in-process, as a handler-mode model would.
"""

import argparse
import json

import httpx
import model_hosting_container_standards.sagemaker as sagemaker_standards
import uvicorn
from fastapi import FastAPI, Request, Response


def build(engine_url):
    client = httpx.AsyncClient(base_url=engine_url, timeout=30) if engine_url else None

    async def engine(path, payload):
        answer = await client.post(path, content=payload, headers={"Content-Type": "application/json"})
        return Response(content=answer.content, status_code=answer.status_code,
                        media_type=answer.headers.get("content-type"))

    @sagemaker_standards.register_ping_handler
    async def ping(raw_request: Request) -> Response:
        return Response(status_code=200, content=b"")

    @sagemaker_standards.register_invocation_handler
    @sagemaker_standards.stateful_session_manager()
    @sagemaker_standards.inject_adapter_id(adapter_path="model")
    async def invocations(raw_request: Request) -> Response:
        body = await raw_request.body()
        if client is not None:
            return await engine("/v1/chat/completions", body)
        return Response(content=json.dumps({"echo": json.loads(body)}), media_type="application/json")

    @sagemaker_standards.register_load_adapter_handler(
        request_shape={"lora_name": "body.name", "lora_path": "body.src"})
    async def load_lora_adapter(request, raw_request: Request) -> Response:
        return await engine("/v1/load_lora_adapter", json.dumps(vars(request)).encode())

    @sagemaker_standards.register_unload_adapter_handler(
        request_shape={"lora_name": "path_params.adapter_name"})
    async def unload_lora_adapter(request, raw_request: Request) -> Response:
        return await engine("/v1/unload_lora_adapter", json.dumps(vars(request)).encode())

    # As in vLLM: the app mounts its own /ping and /invocations (MHCS only records them as the
    # framework's defaults); bootstrap adds the adapter routes and any customer overrides.
    app = FastAPI()
    app.get("/ping")(ping)
    app.post("/invocations")(invocations)
    return sagemaker_standards.bootstrap(app)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--engine-url", default=None)
    args = parser.parse_args()
    uvicorn.run(build(args.engine_url), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
