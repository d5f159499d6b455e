"""The reference point for serving overhead: the least an HTTP server can do to run an ONNX model on a JSON body.

A raw ASGI app (no framework, no validation, no auth, no routing) that parses an Open Inference Protocol JSON body,
runs onnxruntime and answers JSON. It stands in for "a minimal Starlette app" and is, if anything, leaner.
Run: MINIMAL_MODEL=path/to/model.onnx uvicorn bench.minimal_app:app
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort

_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
session = ort.InferenceSession(os.environ["MINIMAL_MODEL"], sess_options=_options, providers=["CPUExecutionProvider"])
INPUT = session.get_inputs()[0].name
OUTPUTS = [o.name for o in session.get_outputs()]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    tensor = json.loads(body)["inputs"][0]
    x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    results = session.run(OUTPUTS, {INPUT: x})
    payload = json.dumps(
        {
            "outputs": [
                {"name": n, "shape": list(r.shape), "datatype": "FP32", "data": r.ravel().tolist()}
                for n, r in zip(OUTPUTS, results, strict=True)
            ]
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
