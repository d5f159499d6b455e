"""The committed stubs are what `make protos` generates, and they live beside the clients' own in one process."""

from __future__ import annotations

from pathlib import Path

from serving.grpc.generate import GENERATED, generate


def _files(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): path.read_text()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_regenerating_gives_the_committed_stubs(tmp_path: Path) -> None:
    out = tmp_path / "generated"
    generate(out)
    regenerated = _files(out)
    assert "grpc_service_pb2.py" in regenerated
    # Not equal: a .proto was changed without `make protos` (or protoc's output moved with grpcio-tools).
    assert regenerated == _files(GENERATED)


def test_our_stubs_and_tritonclients_load_together_and_agree_on_the_wire() -> None:
    from tritonclient.grpc import service_pb2 as triton

    from serving.grpc.generated import grpc_service_pb2 as ours

    # Same names, two descriptor pools: neither import broke the other.
    assert ours.ModelInferRequest.DESCRIPTOR.full_name == triton.ModelInferRequest.DESCRIPTOR.full_name
    assert ours.ModelInferRequest.DESCRIPTOR.file.pool is not triton.ModelInferRequest.DESCRIPTOR.file.pool
    sent = triton.ModelInferRequest(model_name="iris", model_version="2", id="7", raw_input_contents=[b"\x00" * 16])
    tensor = sent.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    tensor.parameters["p"].int64_param = 3
    sent.outputs.add(name="probs")
    received = ours.ModelInferRequest.FromString(sent.SerializeToString())
    assert (received.model_name, received.model_version, received.id) == ("iris", "2", "7")
    assert (
        received.inputs[0].name,
        list(received.inputs[0].shape),
        received.inputs[0].parameters["p"].int64_param,
    ) == (
        "x",
        [1, 4],
        3,
    )
    assert received.outputs[0].name == "probs"
    assert list(received.raw_input_contents) == [b"\x00" * 16]
    # Every field, nested messages' included, has Triton's number and type (ours is a subset of Triton's).
    pending = [
        (message, triton.DESCRIPTOR.message_types_by_name[name])
        for name, message in ours.DESCRIPTOR.message_types_by_name.items()
    ]
    checked = 0
    while pending:
        message, theirs = pending.pop()
        for field in message.fields:
            other = theirs.fields_by_name[field.name]
            assert (field.number, field.type) == (other.number, other.type), (message.full_name, field.name)
            checked += 1
        pending.extend((nested, theirs.nested_types_by_name[nested.name]) for nested in message.nested_types)
    assert checked > 40
    service = ours.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs_service = triton.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for method in service.methods:
        other = theirs_service.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            other.input_type.full_name,
            other.output_type.full_name,
        )
