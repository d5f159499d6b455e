"""`modeldeck push`, `versions`, `convert` and `benchmark` against a live server, with jobs really running."""

from __future__ import annotations

import dataclasses
import hashlib
import re

import pytest

from modeldeck.resources import Job, Version
from registry.formats.base import ConversionError
from registry.services.parity import TOLERANCES
from tests.cli.conftest import Cli
from tests.registry.model_files import onnx_file

pytestmark = pytest.mark.django_db(transaction=True)

CONVERSION_KEYS = {"target", "quantization", "job", "version", "parity_passed", "note"}
ANSI = "\x1b"


def test_push_registers_the_model_uploads_with_plain_progress_and_prints_one_json_document(cli: Cli, tmp_path) -> None:
    # 2000 x 64 float weights: a half-MiB file, read onto the connection in several chunks.
    model = onnx_file(tmp_path / "wide.onnx", features=2000, classes=64, seed=1)
    run = cli("push", model, "--model", "alpha/wide", "--description", "first cut", "--tag", "ci", "--json")
    assert run.code == 0, run.stderr
    document = run.json
    assert set(document) == {"model", "model_created", "unchanged", "version", "conversions"}
    assert (document["model"], document["model_created"], document["conversions"]) == ("alpha/wide", True, [])
    assert document["unchanged"] is False
    version = document["version"]
    assert set(version) == Version.__required_keys__
    assert (version["model"], version["number"], version["format"], version["status"]) == (
        "alpha/wide",
        1,
        "onnx",
        "ready",
    )
    assert version["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert (version["description"], version["tags"], version["filename"]) == ("first cut", ["ci"], "wide.onnx")
    assert version["signature"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 2000]}]

    # Not a terminal: progress is plain lines on stderr, in order, and nothing on stdout but the document.
    assert ANSI not in run.stderr + run.stdout
    lines = run.stderr.splitlines()
    assert lines[0] == "model alpha/wide is new: it is registered with this upload"
    percents = [
        int(m.group(1)) for line in lines if (m := re.fullmatch(r"uploading wide\.onnx: (\d+)% \(.+ of .+\)", line))
    ]
    assert percents[0] == 0
    assert percents[-1] == 100
    assert len(percents) >= 4
    assert percents == sorted(percents)
    assert re.fullmatch(r"uploading wide\.onnx: sent in \d+\.\d s", lines[-2])
    assert lines[-1] == "uploaded wide.onnx as v1 of alpha/wide (ready)"

    # The same file again (a pipeline that pushes on every run): no new version, the one that has it, exit 0.
    again = cli("push", model, "--model", "alpha/wide", "--json")
    assert again.code == 0, again.stderr
    assert (again.json["model_created"], again.json["unchanged"], again.json["version"]["number"]) == (False, True, 1)
    assert again.stderr.splitlines()[-1] == "wide.onnx is identical to v1 of alpha/wide: nothing uploaded"
    changed = onnx_file(tmp_path / "wide2.onnx", features=2000, classes=64, seed=2)
    second = cli("push", changed, "--model", "alpha/wide", "--json")
    assert second.code == 0, second.stderr
    assert (second.json["unchanged"], second.json["version"]["number"]) == (False, 2)

    listed = cli("versions", "alpha/wide", "--json")
    assert listed.code == 0, listed.stderr
    assert set(listed.json) == {"model", "versions"}
    assert [v["number"] for v in listed.json["versions"]] == [2, 1]
    assert all(set(v) == Version.__required_keys__ for v in listed.json["versions"])

    table = cli("versions", "alpha/wide")
    assert table.code == 0, table.stderr
    assert ANSI not in table.stdout
    assert re.search(r"v1 .*onnx .*ready .*uploaded", table.stdout), table.stdout


def test_push_convert_wait_ends_with_converted_versions_whose_parity_passed(cli: Cli, tmp_path) -> None:
    model = onnx_file(tmp_path / "iris.onnx", seed=1)
    run = cli("push", model, "--model", "alpha/iris", "--convert", "onnx,onnx:float16", "--wait", "--json")
    assert run.code == 0, run.stderr
    first, second = run.json["conversions"]
    assert set(first) == set(second) == CONVERSION_KEYS
    # The upload is ONNX already: nothing to convert, and said so.
    assert (first["target"], first["quantization"], first["job"], first["parity_passed"]) == (
        "onnx",
        "none",
        None,
        None,
    )
    assert (first["version"]["number"], first["note"]) == (1, "v1 is already onnx")
    assert set(second["job"]) == Job.__required_keys__
    assert (second["job"]["kind"], second["job"]["status"], second["job"]["progress"]) == ("convert", "succeeded", 100)
    assert second["job"]["params"] == {"target": "onnx", "quantization": "float16"}
    converted = second["version"]
    assert (converted["number"], converted["parent"], converted["recipe"]) == (
        2,
        1,
        {"target": "onnx", "quantization": "float16"},
    )
    assert converted["parity"]["passed"] is True
    assert second["parity_passed"] is True
    assert "error" not in run.json

    job_id = second["job"]["id"]
    assert f"queued convert job {job_id} (v1 -> onnx:float16)" in run.stderr.splitlines()
    waits = [
        line for line in run.stderr.splitlines() if line.startswith(f"convert job {job_id} (v1 -> onnx:float16): ")
    ]
    assert waits[-1] == f"convert job {job_id} (v1 -> onnx:float16): succeeded 100%"
    assert ANSI not in run.stderr


def test_a_failed_parity_report_exits_6_and_says_why(cli: Cli, tmp_path, monkeypatch) -> None:
    # The server runs in this process: an int8 tolerance below zero, which no conversion can meet.
    monkeypatch.setitem(TOLERANCES, "int8", dataclasses.replace(TOLERANCES["int8"], mean_rel=-1.0))
    model = onnx_file(tmp_path / "iris.onnx", seed=1)
    run = cli("push", model, "--model", "alpha/iris", "--convert", "onnx:int8", "--wait", "--json")
    assert run.code == 6, run.stderr
    document = run.json
    assert set(document) == {"model", "model_created", "unchanged", "version", "conversions", "error"}
    (conversion,) = document["conversions"]
    assert conversion["job"]["status"] == "succeeded"
    assert conversion["parity_passed"] is False
    assert conversion["version"]["parity"]["passed"] is False
    error = document["error"]
    assert set(error) == {"code", "message", "detail", "status", "exit_code"}
    assert (error["code"], error["exit_code"], error["status"]) == ("parity_failed", 6, None)
    assert error["detail"]["version"] == 2
    assert error["message"].startswith("Parity failed for v2 of alpha/iris (onnx:int8, from v1): Failed (")
    assert f"error: {error['message']}" in run.stderr.splitlines()

    # Asking again finds the version made before; its report still fails, and so does the command.
    again = cli("convert", "alpha/iris", "1", "--target", "onnx", "--quantization", "int8", "--wait")
    assert again.code == 6, again.stderr
    assert "FAILED" in again.stdout
    assert "error: Parity failed for v2 of alpha/iris" in again.stderr
    # Without --wait nothing is judged yet.
    queued = cli("convert", "alpha/iris", "1", "--target", "onnx", "--quantization", "int8", "--json")
    assert queued.code == 0, queued.stderr
    assert set(queued.json) == {"job", "version", "parity_passed"}
    assert (queued.json["version"], queued.json["parity_passed"]) == (None, None)


def test_a_failed_conversion_job_exits_7(cli: Cli, tmp_path, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise ConversionError("unsupported_op", "The converter has no int8 kernel for op 'Softmax'.")

    monkeypatch.setattr("registry.services.conversions.convert", refuse)
    cli("push", onnx_file(tmp_path / "iris.onnx"), "--model", "alpha/iris")
    run = cli("convert", "alpha/iris", "1", "--target", "onnx", "--quantization", "int8", "--wait", "--json")
    assert run.code == 7, run.stderr
    assert run.json["job"]["status"] == "failed"
    assert run.json["error"]["code"] == "job_failed"
    assert run.json["error"]["message"].endswith("failed: The converter has no int8 kernel for op 'Softmax'.")


def test_a_wait_that_runs_out_exits_8(cli: Cli, tmp_path, monkeypatch) -> None:
    cli("push", onnx_file(tmp_path / "iris.onnx"), "--model", "alpha/iris")
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)  # no worker picks it up
    run = cli(
        "convert",
        "alpha/iris",
        "1",
        "--target",
        "onnx",
        "--quantization",
        "float16",
        "--wait",
        "--timeout",
        "1",
        "--json",
    )
    assert run.code == 8, run.stderr
    assert run.json["error"]["code"] == "wait_timeout"
    assert "error: Gave up waiting for job" in run.stderr


def test_benchmark_wait_prints_the_numbers(cli: Cli, tmp_path) -> None:
    assert cli("push", onnx_file(tmp_path / "iris.onnx"), "--model", "alpha/iris").code == 0
    run = cli("benchmark", "alpha/iris", "1", "--wait", "--json")
    assert run.code == 0, run.stderr
    assert set(run.json) == {"job", "version"}
    assert (run.json["job"]["kind"], run.json["job"]["status"]) == ("benchmark", "succeeded")
    assert [b["batch_size"] for b in run.json["version"]["benchmark"]["batches"]] == [1, 8, 32]

    table = cli("benchmark", "alpha/iris", "1", "--wait")
    assert table.code == 0, table.stderr
    rows = [line.split("│")[1].strip() for line in table.stdout.splitlines() if line.startswith("│")]
    assert rows == ["1", "8", "32"], table.stdout
    assert re.search(r"v1 of alpha/iris \(onnx\): loads in [\d.]+ ms, peak memory [\d.]+ MiB", table.stdout)
