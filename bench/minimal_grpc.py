"""The reference point for gRPC serving overhead: the least a grpc.aio server can do to run an ONNX model.

The gRPC twin of bench/minimal_app.py: a bare `grpc.aio` server answering KServe V2 `ModelInfer` (and the readiness
calls a client waits on) for one ONNX model. It reads the first input from `raw_input_contents` (or typed FP32
contents), runs onnxruntime and answers every output in `raw_output_contents`; no validation, auth, routing or
recording. The messages are tritonclient's generated ones: this is the bench's own process, apart from ModelDeck's.
Run: .venv/bin/python bench/minimal_grpc.py path/to/model.onnx PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
from tritonclient.grpc import service_pb2, service_pb2_grpc

DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64", np.dtype(np.int64): "INT64"}


class MinimalInference(service_pb2_grpc.GRPCInferenceServiceServicer):
    """One ONNX session behind V2 ModelInfer, nothing else."""

    def __init__(self, path: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerReadyResponse(ready=True)

    async def ModelReady(self, request: Any, context: Any) -> Any:
        return service_pb2.ModelReadyResponse(ready=True)

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        tensor = request.inputs[0]
        if request.raw_input_contents:
            x = np.frombuffer(request.raw_input_contents[0], dtype=np.float32)
        else:
            x = np.asarray(tensor.contents.fp32_contents, dtype=np.float32)
        results = self.session.run(self.outputs, {self.input: x.reshape(tuple(tensor.shape))})
        response = service_pb2.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
        for name, result in zip(self.outputs, results, strict=True):
            response.outputs.add(name=name, datatype=DATATYPES[result.dtype], shape=result.shape)
            response.raw_output_contents.append(result.tobytes())
        return response


async def serve(path: str, port: int) -> None:
    server = grpc.aio.server()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(MinimalInference(path), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2])))
