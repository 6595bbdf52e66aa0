"""The naive REST peer: FastAPI + uvicorn, one forward pass per request.

What a user would write without a serving framework: no batching across
requests, the model call made in a worker thread so the event loop stays up.
Run as ``python -m ds_triton_perf.peers.rest_server --port N --model-dir DIR``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from ds_triton_perf.peers.model import load_encoder


class EmbedRequest(BaseModel):
    texts: list[str]


def build_app(model_dir: Path) -> FastAPI:
    """A FastAPI app with ``POST /embed`` and ``GET /health``."""
    encoder = load_encoder(model_dir)
    app = FastAPI(title="naive embedding REST peer")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/embed")
    async def embed(request: EmbedRequest) -> dict[str, Any]:
        if not request.texts:
            raise HTTPException(status_code=400, detail="'texts' must not be empty")
        result = await run_in_threadpool(encoder.encode, request.texts)
        return {"embeddings": result.embeddings.tolist()}

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(build_app(args.model_dir), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
