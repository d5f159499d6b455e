"""The reference point on granian: bench/minimal_app.py's twin over RSGI, granian's native interface.

The same work as the minimal ASGI app (parse an Open Inference Protocol JSON body, run onnxruntime, answer JSON),
with the body read whole by `await protocol()` and the answer sent by one `protocol.response_bytes(...)`.
Run: MINIMAL_MODEL=path/to/model.onnx granian --interface rsgi --loop uvloop bench.minimal_rsgi:app
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


async def app(scope: Any, protocol: Any) -> None:
    if scope.proto != "http":
        return
    tensor = json.loads(await protocol())["inputs"][0]
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
    # granian writes content-length itself for a bytes body.
    protocol.response_bytes(200, [("content-type", "application/json")], payload)
