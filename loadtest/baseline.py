"""The naive baseline of the benchmark (`bench` phase d): FastAPI calling ONNX Runtime once per request,
with the service's own preprocessing and no batching, no queue bound, ONNX Runtime's default threads.

It lives outside service/ on purpose (the service's FastAPI code stays in service/api): it is what a
user would write in an afternoon, the yardstick the service must beat.

    python -m loadtest.baseline --model-repository DIR --port 8100 [--models 1] [--providers cpu|cuda]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service.contract import INPUT_NAME, OUTPUT_NAME
from service.errors import ServiceError
from service.preprocess import preprocess
from service.repository import load_repository

MAX_PIXELS = 50_000_000


def create_baseline(repository: Path, models: int, providers: str = "cpu") -> FastAPI:
    # ONNX Runtime's defaults, as a first version would have them; on a GPU the CUDA provider as is.
    chosen = ["CUDAExecutionProvider", "CPUExecutionProvider"] if providers == "cuda" else ["CPUExecutionProvider"]
    repo = load_repository(repository, limit=models, precision="fp16" if providers == "cuda" else "fp32")
    sessions = [ort.InferenceSession(str(m.path), providers=chosen) for m in repo.members]
    labels = [label.name for label in repo.labels]
    app = FastAPI(title="naive baseline")

    @app.get("/readyz")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/classify")
    async def classify(request: Request, crops: int = 1, models: int = 1, topk: int = 5) -> JSONResponse:
        data = await request.body()
        # The blocking work goes to FastAPI's thread pool (40 threads): one per request in flight.
        try:
            result = await run_in_threadpool(_classify, data, crops, sessions[:models], labels, topk)
        except ServiceError as exc:
            return JSONResponse({"error": exc.message, "code": exc.code}, status_code=exc.status)
        return JSONResponse(result)

    return app


def _classify(data: bytes, crops: int, sessions: list[ort.InferenceSession], labels: list[str], topk: int) -> dict:
    rows = preprocess(data, crops, max_pixels=MAX_PIXELS)
    probabilities = np.mean([s.run([OUTPUT_NAME], {INPUT_NAME: rows})[0].mean(axis=0) for s in sessions], axis=0)
    best = np.argsort(-probabilities)[:topk]
    return {"predictions": [{"index": int(i), "label": labels[i], "probability": float(probabilities[i])}
                            for i in best]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.baseline", description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--models", type=int, default=1, help="members to load (default 1)")
    parser.add_argument("--providers", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    uvicorn.run(create_baseline(args.model_repository, args.models, args.providers), host=args.host, port=args.port,
                log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
