"""ONNX: header sniffing, datatypes and dims, external data refused, invalid graphs reported."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from registry.formats.base import Inspection, ModelFileError
from registry.formats.onnx import FORMAT as ONNX
from runtimes.tensors import Signature, TensorSpec
from tests.registry import model_files

if TYPE_CHECKING:
    from onnx import ModelProto, ValueInfoProto


def save(model: ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def identity_model(inputs: list[ValueInfoProto], opset: int = 17) -> ModelProto:
    """A model that passes each input straight to an output named "<input>_out"."""
    from onnx import ValueInfoProto, helper

    nodes = [helper.make_node("Identity", [vi.name], [f"{vi.name}_out"]) for vi in inputs]
    outputs = []
    for vi in inputs:
        out = ValueInfoProto()
        out.CopyFrom(vi)
        out.name = f"{vi.name}_out"
        outputs.append(out)
    graph = helper.make_graph(nodes, "identity", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="t")
    model.ir_version = 8
    return model


def test_the_test_model_runs_in_onnxruntime(tmp_path: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_files.onnx_file(tmp_path / "m.onnx")), providers=["CPUExecutionProvider"])
    (probs,) = session.run(["probs"], {"x": np.ones((2, 4), dtype=np.float32)})
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), [1.0, 1.0], rtol=1e-6)


def test_seeds_give_different_weights(tmp_path: Path) -> None:
    first = model_files.onnx_file(tmp_path / "a.onnx", seed=1).read_bytes()
    assert first == model_files.onnx_file(tmp_path / "b.onnx", seed=1).read_bytes()
    assert first != model_files.onnx_file(tmp_path / "c.onnx", seed=2).read_bytes()


def test_features_and_classes_shape_the_signature(tmp_path: Path) -> None:
    inspection = ONNX.inspect(model_files.onnx_file(tmp_path / "m.onnx", features=7, classes=5))
    assert inspection.signature == Signature(
        inputs=[TensorSpec(name="x", datatype="FP32", shape=[-1, 7])],
        outputs=[TensorSpec(name="probs", datatype="FP32", shape=[-1, 5])],
    )


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x08\x08\x12\x04test", True),  # ir_version 8, producer_name
        (b"\x08\x03\x3a\x00", True),  # ir_version 3, graph
        (b"\x08\x0a\x28\x01", True),  # ir_version 10, model_version
        (b"\x08\x00\x12\x00", False),  # ir_version 0
        (b"\x08\x15\x12\x00", False),  # ir_version 21
        (b"\x08\x08\x0a\x00", False),  # field 1 again
        (b"\x08\x08\x12", True),
        (b"\x08\x08", False),  # nothing after ir_version
        (b"\x08\x88", False),  # varint runs out
        (b"\x12\x04test", False),
        (b"", False),
    ],
)
def test_sniff_reads_only_the_protobuf_header(tmp_path: Path, head: bytes, expected: bool) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(head)
    assert ONNX.sniff(path) is expected


def test_datatypes_and_dims_map_to_the_open_inference_protocol(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    inputs = [
        helper.make_tensor_value_info("f32", TensorProto.FLOAT, ["batch", 3]),
        helper.make_tensor_value_info("i64", TensorProto.INT64, [None, 2]),
        helper.make_tensor_value_info("text", TensorProto.STRING, [1]),
        helper.make_tensor_value_info("f16", TensorProto.FLOAT16, [2, 2]),
        helper.make_tensor_value_info("f64", TensorProto.DOUBLE, []),
        helper.make_tensor_value_info("flag", TensorProto.BOOL, ["n"]),
        helper.make_tensor_value_info("i32", TensorProto.INT32, [5]),
        helper.make_tensor_value_info("u8", TensorProto.UINT8, [-1, 28, 28]),
        helper.make_tensor_value_info("i8", TensorProto.INT8, [4]),
    ]
    inspection = ONNX.inspect(save(identity_model(inputs), tmp_path / "types.onnx"))
    expected = [
        ("f32", "FP32", [-1, 3]),
        ("i64", "INT64", [-1, 2]),
        ("text", "BYTES", [1]),
        ("f16", "FP16", [2, 2]),
        ("f64", "FP64", []),
        ("flag", "BOOL", [-1]),
        ("i32", "INT32", [5]),
        ("u8", "UINT8", [-1, 28, 28]),
        ("i8", "INT8", [4]),
    ]
    assert inspection == Inspection(
        signature=Signature(
            inputs=[TensorSpec(name=n, datatype=d, shape=s) for n, d, s in expected],
            outputs=[TensorSpec(name=f"{n}_out", datatype=d, shape=s) for n, d, s in expected],
        ),
        framework="onnx",
        framework_version="",
        metadata={"opset": 17, "ir_version": 8, "producer": "t"},
    )


def test_initializers_listed_as_inputs_are_not_inputs(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    model = model_files._onnx_model(4, 3, seed=0)
    # IR 3 models list their weights among the graph inputs too.
    model.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [4, 3]))
    inspection = ONNX.inspect(save(model, tmp_path / "m.onnx"))
    assert [spec.name for spec in inspection.signature.inputs] == ["x"]


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "weights.bin"])
def test_external_data_is_refused_wherever_it_points(tmp_path: Path, location: str) -> None:
    path = model_files.onnx_with_external_data(tmp_path / "ext.onnx", location=location)
    assert ONNX.sniff(path)
    with pytest.raises(ModelFileError) as caught:
        ONNX.inspect(path)
    assert caught.value.code == "onnx_external_data"
    assert caught.value.detail == {"tensor": "W", "location": location}
    assert f"'{location}'" in caught.value.message
    assert "single-file upload" in caught.value.message
    assert "never reads locations outside" in caught.value.message


def test_external_data_in_a_constant_inside_a_subgraph_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    constant = helper.make_tensor("c", TensorProto.FLOAT, [1], [1.0])
    constant.ClearField("float_data")
    constant.data_location = TensorProto.EXTERNAL
    entry = constant.external_data.add()
    entry.key, entry.value = "location", "/proc/self/environ"
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=constant)],
        "branch",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)],
        "g",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(ModelFileError) as caught:
        ONNX.inspect(save(model, tmp_path / "nested.onnx"))
    assert caught.value.code == "onnx_external_data"
    assert caught.value.detail == {"tensor": "c", "location": "/proc/self/environ"}


def test_a_graph_the_checker_rejects_is_invalid(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("NoSuchOperator", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(ModelFileError) as caught:
        ONNX.inspect(save(model, tmp_path / "bad.onnx"))
    assert caught.value.code == "invalid_onnx"
    assert "NoSuchOperator" in caught.value.message
    assert "Traceback" not in caught.value.message


def test_a_corrupt_protobuf_behind_a_good_header_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x08\x3a\xff\xff\xff\x0f" + bytes(10))
    assert ONNX.sniff(path)
    with pytest.raises(ModelFileError) as caught:
        ONNX.inspect(path)
    assert caught.value.code == "invalid_onnx"


def test_a_non_tensor_output_is_refused_with_a_hint(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("SequenceConstruct", ["x"], ["seq"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(ModelFileError) as caught:
        ONNX.inspect(save(model, tmp_path / "seq.onnx"))
    assert caught.value.code == "unsupported_datatype"
    assert caught.value.detail == {"tensor": "seq", "kind": "sequence_type"}
    assert "zipmap" in caught.value.message


def test_an_element_type_without_an_oip_datatype_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info("bf", TensorProto.BFLOAT16, [2])]
    with pytest.raises(ModelFileError) as caught:
        ONNX.inspect(save(identity_model(inputs), tmp_path / "bf16.onnx"))
    assert caught.value.code == "unsupported_datatype"
    assert caught.value.detail == {"tensor": "bf", "elem_type": "BFLOAT16"}


def test_an_input_without_a_shape_is_invalid(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)]
    with pytest.raises(ModelFileError) as caught:
        ONNX.inspect(save(identity_model(inputs), tmp_path / "rankless.onnx"))
    assert caught.value.code == "invalid_onnx"
    assert "shape" in caught.value.message
