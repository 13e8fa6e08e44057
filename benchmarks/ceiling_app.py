"""The framework's ceiling: FastAPI under uvicorn, set up as our service runs (one process,
uvloop, httptools, no access log), answering POST /predict with a fixed answer and no model.

Two endpoints, by CEILING_MODE:

- `bytes` (the ceiling, the default): an `async def` endpoint that reads the request body, as
  any endpoint that scores it must, and sends CEILING_BODY (a JSON answer of the size ours
  gives) as bytes prepared once: no parsing, no validation, no model, no log, no metrics.
  Whatever our service answers below this rate is its own work.
- `typical`: FastAPI as its tutorial writes it: a plain `def` endpoint (run in the thread
  pool) taking a pydantic model of the record (CEILING_FEATURES: [[name, kind], ...]) and
  returning the answer as a dict. Issue 13 measured its "ceiling" this way (2,470 req/s at
  c1 and 3,180 at c16 there): a typical FastAPI service's cost before any model.

    CEILING_BODY='{"prediction": "Adelie"}' python benchmarks/ceiling_app.py PORT
"""

import json
import os
import sys

import uvicorn
from fastapi import FastAPI, Request, Response
from pydantic import create_model

BODY = os.environ.get("CEILING_BODY", '{"prediction": null}').encode()
MODE = os.environ.get("CEILING_MODE", "bytes")
app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

if MODE == "bytes":

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        await request.body()
        return Response(BODY, media_type="application/json")

elif MODE == "typical":
    ANSWER = json.loads(BODY)
    FEATURES = json.loads(os.environ.get("CEILING_FEATURES", "[]"))
    Record = create_model(  # type: ignore[call-overload]
        "Record",
        **{
            name: ((float | None) if kind == "numeric" else (str | None), None)
            for name, kind in FEATURES
        },
    )

    @app.post("/predict")
    def predict_typical(record: Record) -> dict:  # type: ignore[valid-type]
        return ANSWER

else:
    sys.exit(f"CEILING_MODE: bytes or typical, not {MODE!r}")


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
