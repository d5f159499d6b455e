"""The ceiling for batching in Python: the leanest server that can answer an Open Inference Protocol binary request.

No ASGI, no framework, no routing, no validation, no auth, no recording: an asyncio protocol on uvloop feeds
httptools, reads the binary tensor that follows the JSON header, runs onnxruntime and writes one response. With
`off` each request runs on the event loop at batch 1 (as ModelDeck runs a fast model); with `on` requests are
stacked for up to 2 ms or 32 rows and run once in a thread (as ModelDeck's batcher does). bench/serving.py runs both
side by side with ModelDeck to show how much of a request batching can take away when nothing else is left.
Not a server to use: it trusts every byte it is sent.
Run: python bench/lean_server.py MODEL.onnx PORT off|on
"""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import httptools
import numpy as np
import onnxruntime as ort
import orjson
import uvloop

MAX_BATCH = 32
DELAY_SECONDS = 0.002


class LeanServer:
    def __init__(self, model: str, batching: bool) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2  # as ModelDeck's sessions on this 2-core machine
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        self.run = session._sess.run  # the C++ call, without the Python wrapper's checks
        self.input = session.get_inputs()[0].name
        self.outputs = [o.name for o in session.get_outputs()]
        self.batching = batching
        self.pool = ThreadPoolExecutor(1)
        self.queue: list[tuple[asyncio.Transport, np.ndarray]] = []
        self.timer: asyncio.TimerHandle | None = None

    def infer(self, transport: asyncio.Transport, x: np.ndarray) -> None:
        if not self.batching:
            self.respond(transport, self.run(self.outputs, {self.input: x}, None)[0])
            return
        self.queue.append((transport, x))
        if len(self.queue) >= MAX_BATCH:
            self.flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(DELAY_SECONDS, self.flush)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.queue = self.queue, []
        stacked = np.concatenate([x for _transport, x in batch])
        future = asyncio.get_running_loop().run_in_executor(
            self.pool, self.run, self.outputs, {self.input: stacked}, None
        )

        def done(finished: asyncio.Future[Any]) -> None:
            y = finished.result()[0]
            for row, (transport, _x) in enumerate(batch):
                self.respond(transport, y[row : row + 1])

        future.add_done_callback(done)

    def respond(self, transport: asyncio.Transport, y: np.ndarray) -> None:
        data = np.ascontiguousarray(y, dtype="<f4").tobytes()
        output = {"name": self.outputs[0], "datatype": "FP32", "shape": list(y.shape)}
        header = orjson.dumps({"outputs": [{**output, "parameters": {"binary_data_size": len(data)}}]})
        head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
            b"inference-header-content-length: %d\r\ncontent-length: %d\r\n\r\n"
            % (len(header), len(header) + len(data))
        )
        transport.write(head + header + data)


class Connection(asyncio.Protocol):
    def __init__(self, server: LeanServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.body = b""
        self.header_length = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transport does not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.body = b""
        self.header_length = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"inference-header-content-length":
            self.header_length = int(value)

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        shape = orjson.loads(self.body[: self.header_length])["inputs"][0]["shape"]
        x = np.frombuffer(self.body, dtype="<f4", offset=self.header_length).reshape(shape)
        self.server.infer(self.transport, x)


async def serve(model: str, port: int, batching: bool) -> None:
    server = LeanServer(model, batching)
    listener = await asyncio.get_running_loop().create_server(lambda: Connection(server), "127.0.0.1", port)
    await listener.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "on"))
