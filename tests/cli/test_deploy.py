"""`modeldeck deploy`, `promote`, `rollback`, `status` and `predict` against a live server."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from modeldeck.resources import Endpoint, Release
from teams.choices import Role
from tests.cli.conftest import Cli
from tests.registry.model_files import onnx_file

pytestmark = pytest.mark.django_db(transaction=True)

X = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5) / 4


def onnxruntime_answer(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


def test_deploy_promote_canary_rollback_status_and_predict(cli: Cli, tmp_path) -> None:
    files = {seed: onnx_file(tmp_path / f"iris{seed}.onnx", seed=seed) for seed in (1, 2)}
    for seed in (1, 2):
        assert cli("push", files[seed], "--model", "alpha/iris").code == 0

    created = cli("deploy", "iris-staging", "--model", "alpha/iris", "--version", "1", "--reason", "first", "--json")
    assert created.code == 0, created.stderr
    assert set(created.json) == {"created", "promoted", "endpoint"}
    endpoint = created.json["endpoint"]
    assert (created.json["created"], created.json["promoted"]) == (True, False)
    assert set(endpoint) == Endpoint.__required_keys__
    assert set(endpoint["release"]) == Release.__required_keys__
    assert (endpoint["name"], endpoint["model"], endpoint["protected"], endpoint["public"]) == (
        "iris-staging",
        "alpha/iris",
        False,
        False,
    )
    assert (endpoint["release"]["primary"], endpoint["release"]["reason"]) == (1, "first")

    # Deploying what already serves changes nothing; deploying another version promotes it.
    same = cli("deploy", "iris-staging", "--model", "alpha/iris", "--version", "1", "--json")
    assert (same.code, same.json["created"], same.json["promoted"]) == (0, False, False)
    assert same.json["endpoint"]["release"]["number"] == 1

    canary = cli("promote", "iris-staging", "2", "--canary", "10", "--reason", "int8 trial", "--json")
    assert canary.code == 0, canary.stderr
    assert set(canary.json) == {"endpoint", "release"}
    release = canary.json["release"]
    assert set(release) == Release.__required_keys__
    assert (release["number"], release["action"], release["primary"], release["canary"], release["canary_percent"]) == (
        2,
        "canary",
        1,
        2,
        10,
    )
    assert (release["actor"], release["reason"]) == ("dev", "int8 trial")

    promoted = cli("deploy", "iris-staging", "--model", "alpha/iris", "--version", "2", "--json")
    assert (promoted.code, promoted.json["promoted"]) == (0, True)
    assert (promoted.json["endpoint"]["release"]["primary"], promoted.json["endpoint"]["release"]["canary"]) == (
        2,
        None,
    )

    predicted = cli("--json", "predict", "iris-staging", "--json", "-", stdin=json.dumps({"x": X.tolist()}))
    assert predicted.code == 0, predicted.stderr
    answer = predicted.json
    assert (answer["model_name"], answer["model_version"]) == ("iris-staging", "2")
    (output,) = answer["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("probs", "FP32", [3, 3])
    np.testing.assert_allclose(np.array(output["data"]).reshape(3, 3), onnxruntime_answer(files[2], X), rtol=1e-6)

    rolled = cli("rollback", "iris-staging", "--reason", "latency", "--json")
    assert rolled.code == 0, rolled.stderr
    assert (rolled.json["release"]["action"], rolled.json["release"]["primary"]) == ("rollback", 1)
    # No canary live: the previous primary comes back alone (not release 2's canary of v2 with it).
    assert (rolled.json["release"]["canary"], rolled.json["release"]["canary_percent"]) == (None, 0)

    status = cli("status", "iris-staging", "--json")
    assert status.code == 0, status.stderr
    assert set(status.json) == {"endpoint", "releases"}
    assert [r["action"] for r in status.json["releases"]] == ["rollback", "promote", "canary", "create"]
    assert status.json["endpoint"]["release"]["number"] == 4

    # An OIP body from a file, asking one version; the answer is onnxruntime's to the last digit.
    body = tmp_path / "body.json"
    body.write_text(
        json.dumps({"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": X.ravel().tolist()}]})
    )
    pinned = cli("--json", "predict", "iris-staging", "--json", body, "--version", "1")
    assert pinned.code == 0, pinned.stderr
    assert pinned.json["model_version"] == "1"
    values = np.array(pinned.json["outputs"][0]["data"]).reshape(3, 3)
    np.testing.assert_allclose(values, onnxruntime_answer(files[1], X), rtol=1e-6)

    # For people: tables, no escape codes off a terminal.
    human = cli("status", "iris-staging")
    assert human.code == 0, human.stderr
    assert "v1 primary, v2 canary 10%" in human.stdout
    assert "latency" in human.stdout
    table = cli("predict", "iris-staging", "--json", body, "--version", "1")
    assert table.code == 0, table.stderr
    assert "probs" in table.stdout
    assert "\x1b" not in human.stdout + table.stdout


def test_deploy_refuses_what_the_server_refuses(cli: Cli, tmp_path, make_member, team_a) -> None:
    assert cli("push", onnx_file(tmp_path / "iris.onnx"), "--model", "alpha/iris").code == 0
    # Protected endpoints are for admins: a developer's token gets 403, exit 4.
    protected = cli("deploy", "iris-prod", "--model", "alpha/iris", "--version", "1", "--protected", "--json")
    assert protected.code == 4, protected.stderr
    assert protected.json["error"]["code"] == "permission_denied"
    assert protected.json["error"]["status"] == 403

    admin = make_member(team=team_a, role=Role.ADMIN, username="lead")
    made = cli(
        "deploy", "iris-prod", "--model", "alpha/iris", "--version", "1", "--protected", MODELDECK_TOKEN=admin.token
    )
    assert made.code == 0, made.stderr
    assert "Endpoint iris-prod created." in made.stdout
    # ...and the developer cannot promote on it either.
    assert cli("promote", "iris-prod", "1").code == 4

    # A version the model does not have: 404, exit 3.
    missing = cli("promote", "iris-prod", "9", "--json", MODELDECK_TOKEN=admin.token)
    assert (missing.code, missing.json["error"]["code"]) == (3, "not_found")

    # Named arrays whose name the endpoint does not have: refused before sending, exit 5.
    wrong = cli("--json", "predict", "iris-prod", "--json", "-", stdin=json.dumps({"y": [[1, 2, 3, 4]]}))
    assert (wrong.code, wrong.json["error"]["code"]) == (5, "unknown_input")
    assert "error: The endpoint has no input named 'y'; its inputs are 'x'." in wrong.stderr
    # A body the server refuses (wrong width): 400 with the data plane's message, exit 5.
    bad = cli("predict", "iris-prod", "--json", "-", stdin=json.dumps({"x": [[1, 2, 3]]}))
    assert bad.code == 5, bad.stderr
    assert "input 'x' has shape [1, 3]" in bad.stderr


def test_delete_needs_the_name_again(cli: Cli, tmp_path) -> None:
    from deployments.models import Endpoint

    model = onnx_file(tmp_path / "m.onnx", seed=3)
    assert cli("push", model, "--model", "alpha/gone").code == 0
    assert cli("deploy", "gone", "--model", "alpha/gone", "--version", "1").code == 0
    refused = cli("delete", "gone", "--json")
    assert refused.code == 5, refused.stderr
    assert refused.json["error"]["code"] == "confirmation_required"
    assert Endpoint.objects.filter(name="gone").exists()
    deleted = cli("delete", "gone", "--confirm", "gone", "--json")
    assert deleted.code == 0, deleted.stderr
    assert deleted.json == {"endpoint": "gone", "deleted": True}
    assert not Endpoint.objects.filter(name="gone").exists()
