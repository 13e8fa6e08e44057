"""The framework's ceiling: FastAPI under uvicorn, set up as our service runs (one process,
uvloop, httptools, no access log), answering POST /predict with a fixed body and no model.

It reads the request body, as any endpoint that scores it must, and sends CEILING_BODY (a
JSON answer of the size ours gives) as bytes prepared once: no validation, no model, no log,
no metrics. Whatever our service answers below this rate is its own work.

    CEILING_BODY='{"prediction": "Adelie"}' python benchmarks/ceiling_app.py PORT
"""

import os
import sys

import uvicorn
from fastapi import FastAPI, Request, Response

BODY = os.environ.get("CEILING_BODY", '{"prediction": null}').encode()
app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/predict")
async def predict(request: Request) -> Response:
    await request.body()
    return Response(BODY, media_type="application/json")


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
