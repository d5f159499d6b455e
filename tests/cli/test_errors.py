"""Exit codes a pipeline can act on, each with the message that says what to do."""

from __future__ import annotations

import json
import socket

import pytest

from modeldeck.cli import main
from teams.choices import Role
from tests.cli.conftest import Cli
from tests.registry.model_files import onnx_file

pytestmark = pytest.mark.django_db(transaction=True)

ERROR_KEYS = {"code", "message", "detail", "status", "exit_code"}


def test_exit_codes(cli: Cli, tmp_path, make_member, team_a) -> None:
    model = onnx_file(tmp_path / "iris.onnx")

    # 3: the model does not exist (or is not this team's).
    unknown = cli("versions", "alpha/nope", "--json")
    assert unknown.code == 3, unknown.stderr
    assert set(unknown.json) == {"error"}
    assert set(unknown.json["error"]) == ERROR_KEYS
    assert (unknown.json["error"]["code"], unknown.json["error"]["status"]) == ("not_found", 404)
    assert unknown.stderr.startswith("error: ")
    assert cli("versions", "bravo/iris").code == 3

    # 4: a wrong token, with the way out; a viewer's token trying to upload; no login at all.
    wrong = cli("versions", "alpha/nope", "--json", MODELDECK_TOKEN="mdk_not-a-real-token")
    assert wrong.code == 4, wrong.stderr
    assert (wrong.json["error"]["status"], wrong.json["error"]["code"]) == (401, "authentication_failed")
    assert "hint: Run `modeldeck login URL --token TOKEN`, or set MODELDECK_URL and MODELDECK_TOKEN." in wrong.stderr
    viewer = make_member(team=team_a, role=Role.VIEWER, username="watcher")
    refused = cli("push", model, "--model", "alpha/iris", "--json", MODELDECK_TOKEN=viewer.token)
    assert refused.code == 4, refused.stderr
    assert refused.json["error"]["status"] == 403
    nobody = cli("versions", "alpha/iris", MODELDECK_TOKEN=None, MODELDECK_URL=None)
    assert nobody.code == 4
    assert "error: No ModelDeck login: a URL and a token missing." in nobody.stderr

    # 5: the server refuses the file (not a model), with its code and message.
    junk = tmp_path / "notes.onnx"
    junk.write_bytes(b"these are not the weights you are looking for")
    invalid = cli("push", junk, "--model", "alpha/iris", "--json")
    assert invalid.code == 5, invalid.stderr
    assert (invalid.json["error"]["status"], invalid.json["error"]["code"]) == (422, "unknown_format")
    assert "error: 'notes.onnx' is not a model file" in invalid.stderr
    # ...and a refused first push to a new model registers no empty model.
    fresh = cli("push", junk, "--model", "alpha/never-made", "--json")
    assert fresh.code == 5, fresh.stderr
    assert cli("versions", "alpha/never-made", "--json").code == 3

    # 2: a local file that is not there, before anything is sent.
    missing = cli("push", tmp_path / "missing.onnx", "--model", "alpha/iris", "--json")
    assert (missing.code, missing.json["error"]["code"]) == (2, "no_such_file")

    # 8: nothing listens there.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    down = cli("versions", "alpha/iris", "--json", MODELDECK_URL=closed)
    assert down.code == 8, down.stderr
    assert down.json["error"]["code"] == "connection_failed"
    assert f"error: Cannot reach ModelDeck at {closed}: " in down.stderr
    assert "hint: Run `modeldeck login URL --token TOKEN`" in down.stderr


def test_predict_exit_codes_follow_the_data_plane(cli: Cli, tmp_path, make_member, team_b) -> None:
    assert cli("push", onnx_file(tmp_path / "iris.onnx"), "--model", "alpha/iris").code == 0
    assert cli("deploy", "iris-prod", "--model", "alpha/iris", "--version", "1").code == 0
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})
    served = cli("--json", "predict", "iris-prod", "--json", "-", stdin=body)
    assert served.code == 0, served.stderr
    assert served.json["model_name"] == "iris-prod"

    # 4: a wrong token is told so by the data plane (401), for a name that exists and one that does not; never 3.
    invalid = "invalid token: it is unknown, expired or revoked, or its user is no longer a member of its team"
    wrong_token = "mdk_00000000" + "A" * 43
    for name in ("iris-prod", "nope"):
        wrong = cli("--json", "predict", name, "--json", "-", stdin=body, MODELDECK_TOKEN=wrong_token)
        assert wrong.code == 4, wrong.stderr
        assert wrong.json == {
            "error": {"code": "http_401", "message": invalid, "detail": {}, "status": 401, "exit_code": 4}
        }
        assert f"error: {invalid}" in wrong.stderr
        assert (
            "hint: Run `modeldeck login URL --token TOKEN`, or set MODELDECK_URL and MODELDECK_TOKEN." in wrong.stderr
        )
    # Named arrays first read the endpoint's metadata: refused the same way.
    named = cli(
        "predict", "iris-prod", "--json", "-", stdin='{"x": [[5.1, 3.5, 1.4, 0.2]]}', MODELDECK_TOKEN=wrong_token
    )
    assert named.code == 4, named.stderr
    assert f"error: {invalid}" in named.stderr

    # 3: a valid token of another team gets the same 404 as a name that does not exist.
    outsider = make_member(team=team_b, role=Role.ADMIN, username="outsider")
    for name, token in (("iris-prod", outsider.token), ("nope", cli.token)):
        missing = cli("--json", "predict", name, "--json", "-", stdin=body, MODELDECK_TOKEN=token)
        assert missing.code == 3, missing.stderr
        assert missing.json == {
            "error": {
                "code": "http_404",
                "message": f"endpoint '{name}' not found",
                "detail": {},
                "status": 404,
                "exit_code": 3,
            }
        }
        assert "hint:" not in missing.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["versions", "no-slash"],
        ["push", "m.onnx", "--model", "alpha/iris", "--convert", "onnx:int4"],
        ["promote", "iris", "1", "--canary", "101"],
        ["convert", "alpha/iris", "one", "--target", "onnx"],
        ["frobnicate"],
        [],
    ],
)
def test_usage_errors_exit_2_before_anything_is_sent(argv, capsys) -> None:
    # argparse's own errors: run in this process, no server (and no login) involved.
    assert main(argv) == 2
    assert "usage: modeldeck" in capsys.readouterr().err
