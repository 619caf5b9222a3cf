"""A FastAPI app behind smc (SMC_ASGI_APP=main:app): the model loads in the lifespan, so /ping
turns 200 only once it is loaded; POST /invocations streams tokens as server-sent events."""

import asyncio
import json
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

MODEL: dict[str, list[str]] = {}


@asynccontextmanager
async def lifespan(app: FastAPI):
    # A real app loads its weights here (from /opt/ml/model when SageMaker provides one).
    MODEL["vocabulary"] = ["tokens", "arrive", "one", "by", "one"]
    yield
    MODEL.clear()


app = FastAPI(lifespan=lifespan)


class Prompt(BaseModel):
    prompt: str
    max_tokens: int = 5


@app.post("/invocations")
async def invocations(body: Prompt) -> StreamingResponse:
    async def events():
        for index, token in enumerate(MODEL["vocabulary"][: body.max_tokens]):
            yield f"data: {json.dumps({'index': index, 'token': token})}\n\n"
            await asyncio.sleep(0.05)  # a real model decodes here

    return StreamingResponse(events(), media_type="text/event-stream")
