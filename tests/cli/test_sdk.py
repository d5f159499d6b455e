"""The Python SDK in-process: typed results, streamed upload with progress, typed errors from the error shape."""

from __future__ import annotations

import hashlib

import pytest

from modeldeck import Client, Invalid, NotAuthenticated, NotFound, PermissionDenied
from teams.choices import Role
from tests.cli.conftest import Cli
from tests.registry.model_files import onnx_file

pytestmark = pytest.mark.django_db(transaction=True)


def test_sdk_round_trip_and_errors(cli: Cli, tmp_path, make_member, team_a) -> None:
    model = onnx_file(tmp_path / "wide.onnx", features=1000, classes=32)
    sample = tmp_path / "sample.json"
    sample.write_text('{"x": [' + ",".join(["[" + ",".join(["0.5"] * 1000) + "]"] * 2) + "]}")
    calls: list[tuple[int, int]] = []
    with Client(cli.url, cli.token) as client:
        assert client.me()["username"] == "dev"
        created, was_new = client.ensure_model("alpha/wide", description="wide one")
        assert (created["name"], created["description"], was_new) == ("wide", "wide one", True)
        assert client.ensure_model("alpha/wide")[1] is False

        version = client.upload_version("alpha/wide", model, sample=sample, progress=lambda s, t: calls.append((s, t)))
        total = model.stat().st_size + sample.stat().st_size
        assert calls[0] == (0, total)
        assert calls[-1] == (total, total)
        assert len(calls) > 3  # streamed in chunks, not sent in one piece
        assert [sent for sent, _ in calls] == sorted(sent for sent, _ in calls)
        assert version["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
        assert version["sample_filename"] == "sample.json"

        job = client.wait_job(client.convert("alpha/wide", 1, target="onnx", quantization="float16")["id"])
        assert job["status"] == "succeeded"
        assert job["result_version"] is not None
        assert client.get_version("alpha/wide", job["result_version"])["parity"]["input_source"] == "sample"

        with pytest.raises(NotFound) as missing:
            client.get_version("alpha/wide", 99)
        assert (missing.value.status, missing.value.code, missing.value.exit_code) == (404, "not_found", 3)
        with pytest.raises(Invalid) as taken:
            client.create_model("alpha/wide")
        assert (taken.value.status, taken.value.exit_code) == (409, 5)
        with pytest.raises(Invalid) as unsupported:
            client.convert("alpha/wide", 1, target="tflite")
        assert unsupported.value.status == 422
        assert unsupported.value.detail == {"supported": ["onnx:int8", "onnx:float16"]}

    viewer = make_member(team=team_a, role=Role.VIEWER, username="watcher")
    with Client(cli.url, viewer.token) as client, pytest.raises(PermissionDenied) as denied:
        client.convert("alpha/wide", 1, target="onnx", quantization="int8")
    assert (denied.value.status, denied.value.exit_code) == (403, 4)
    with Client(cli.url, "mdk_wrong") as client, pytest.raises(NotAuthenticated):
        client.list_models()
