"""ONNX Runtime: one tuned session per model file; `InferenceSession.run` is thread-safe."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from runtimes.tensors import Signature

if TYPE_CHECKING:
    from onnx import ModelProto


def default_threads() -> int:
    # Intra-op threads per session: concurrent requests already use several cores, so stay modest.
    return int(os.environ.get("MODELDECK_ORT_THREADS", "0")) or min(4, os.cpu_count() or 1)


class OnnxRuntime:
    """Run an ONNX model with onnxruntime's CPU provider, graph optimisations on.

    `signature` is the one the registry inspected, when the caller has it; running needs only the file.
    """

    def __init__(self, path: Path, signature: Signature | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Intra-op threads that spin after each run steal the cores the event loop, the batcher and the other
        # requests need (measured in bench/serving.py: batched throughput nearly doubles without spinning).
        if os.environ.get("MODELDECK_ORT_SPIN", "0") != "1":
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Name the provider: this onnxruntime build also lists an Azure one (TOOLCHAIN G12).
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self._output_names = [o.name for o in self._session.get_outputs()]
        self._signature = signature
        self.input_names = [i.name for i in self._session.get_inputs()]
        self._input_set = set(self.input_names)
        self._text_inputs = tuple(i.name for i in self._session.get_inputs() if i.type == "tensor(string)")
        # A ZipMap output (skl2onnx's default classifier export) is a list of {class: probability} maps; it comes
        # back as the [N, classes] tensor it is served as. Served files have it rewritten away already.
        self._zipmap_labels: dict[str, list[str]] = {}
        if any(o.type.startswith("seq(map(") for o in self._session.get_outputs()):
            import onnx

            zipmaps = zipmap_outputs(onnx.load(str(path), load_external_data=False))
            self._zipmap_labels = {name: labels for name, (_, labels) in zipmaps.items()}
        # The C++ session's own run: InferenceSession.run's Python wrapper re-checks the feed (WebGPU graph capture,
        # input names, OrtValue ownership) on every call, 8 µs of a 24 µs iris call here. A feed with exactly the
        # model's inputs skips it (a wrong dtype or shape still fails in C++ as InvalidArgument); any other feed goes
        # through the wrapper and gets its errors.
        native = getattr(self._session, "_sess", None)
        self._native_run = native.run if native is not None else None

    @property
    def signature(self) -> Signature:
        """The signature it was loaded with (serving passes the registry's; parity loads files without one)."""
        if self._signature is None:
            raise AttributeError("this runtime was loaded without a signature")
        return self._signature

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._text_inputs:
            inputs = {**inputs, **{name: text_tensor(inputs[name]) for name in self._text_inputs if name in inputs}}
        if self._native_run is not None and inputs.keys() == self._input_set:
            values = self._native_run(self._output_names, inputs, None)
        else:
            values = self._session.run(self._output_names, inputs)
        outputs = dict(zip(self._output_names, values, strict=True))
        if self._zipmap_labels:
            for name, labels in self._zipmap_labels.items():
                # One {class: probability} map per row; the served tensor has the classes in the ZipMap's order.
                rows = [{str(key): probability for key, probability in row.items()} for row in outputs[name]]
                outputs[name] = np.asarray([[row[label] for label in labels] for row in rows], dtype=np.float32)
        return outputs


def load(path: Path, signature: Signature | None = None) -> OnnxRuntime:
    return OnnxRuntime(path, signature)


def text_tensor(array: np.ndarray) -> np.ndarray:
    """An object array of strings as onnxruntime reads them: str, with bytes decoded as UTF-8.

    onnxruntime takes a bytes element of a string tensor as the text of its repr ("b'S'"), so a category or a word
    sent as bytes (the binary tensor extension, gRPC, a sample file) would silently match nothing.
    """
    if array.dtype != object:
        return array
    flat = array.reshape(-1)
    if not any(isinstance(value, bytes) for value in flat):
        return array
    try:
        decoded = [value.decode("utf-8") if isinstance(value, bytes) else value for value in flat]
    except UnicodeDecodeError as exc:
        raise ValueError(f"a string element is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return np.array(decoded, dtype=object).reshape(array.shape)


def zipmap_outputs(model: ModelProto) -> dict[str, tuple[str, list[str]]]:
    """Graph outputs that a ZipMap node makes: output name -> (the probability tensor it zips, its class labels).

    skl2onnx's default classifier export (`to_onnx(clf, X)`, TOOLCHAIN G16) returns probabilities as a sequence of
    {class: probability} maps, which no inference protocol carries; the tensor that feeds the ZipMap holds the same
    numbers in class order.
    """
    outputs = {vi.name for vi in model.graph.output}
    found = {}
    for node in model.graph.node:
        if node.op_type == "ZipMap" and node.domain == "ai.onnx.ml" and node.output[0] in outputs:
            labels: list[str] = []
            for attribute in node.attribute:
                if attribute.name == "classlabels_int64s":
                    labels = [str(label) for label in attribute.ints]
                elif attribute.name == "classlabels_strings":
                    labels = [label.decode() for label in attribute.strings]
            found[node.output[0]] = (node.input[0], labels)
    return found
