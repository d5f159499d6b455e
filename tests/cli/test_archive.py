"""`modeldeck archive` and `modeldeck unarchive` against a live server: a model or one version, refusals exit 5."""

from __future__ import annotations

import pytest

from modeldeck.resources import Model, Version
from registry.models import ModelVersion, RegisteredModel
from tests.cli.conftest import Cli
from tests.registry.model_files import onnx_file

pytestmark = pytest.mark.django_db(transaction=True)


def test_archive_and_unarchive_a_version_and_a_model(cli: Cli, tmp_path) -> None:
    for seed in (1, 2):
        assert cli("push", onnx_file(tmp_path / f"m{seed}.onnx", seed=seed), "--model", "alpha/iris").code == 0
    assert cli("deploy", "iris", "--model", "alpha/iris", "--version", "1").code == 0

    # v1 serves: refused, exit 5, with the endpoint named.
    refused = cli("archive", "alpha/iris:1", "--json")
    assert refused.code == 5, refused.stderr
    assert refused.json["error"]["code"] == "version_in_use"
    assert "iris (v1 primary)" in refused.json["error"]["message"]
    refused = cli("archive", "alpha/iris")
    assert refused.code == 5
    assert "still served by iris (v1 primary)" in refused.stderr

    archived = cli("archive", "alpha/iris:2", "--json")
    assert archived.code == 0, archived.stderr
    assert set(archived.json) == {"version"}
    assert set(archived.json["version"]) == Version.__required_keys__
    assert (archived.json["version"]["number"], archived.json["version"]["archived_by"]) == (2, "dev")
    assert ModelVersion.objects.get(number=2).archived_at is not None
    listed = cli("versions", "alpha/iris", "--json")
    assert [v["number"] for v in listed.json["versions"]] == [1]  # archived versions are hidden
    assert cli("promote", "iris", "2").code == 5  # and never deployed

    shown = cli("unarchive", "alpha/iris:2")
    assert shown.code == 0, shown.stderr
    assert "Unarchived alpha/iris v2" in shown.stdout
    assert ModelVersion.objects.get(number=2).archived_at is None

    assert cli("delete", "iris", "--confirm", "iris").code == 0
    model = cli("archive", "alpha/iris", "--json")
    assert model.code == 0, model.stderr
    assert set(model.json["model"]) == Model.__required_keys__
    assert model.json["model"]["archived_at"] is not None
    assert RegisteredModel.objects.get(name="iris").archived_at is not None
    pushed = cli("push", onnx_file(tmp_path / "m3.onnx", seed=3), "--model", "alpha/iris", "--json")
    assert pushed.code == 5 and pushed.json["error"]["code"] == "model_archived"
    assert cli("unarchive", "alpha/iris").code == 0
    assert RegisteredModel.objects.get(name="iris").archived_at is None


def test_a_malformed_target_is_a_usage_error(cli: Cli) -> None:
    bad = cli("archive", "alpha/iris:latest")
    assert bad.code == 2
    assert "'latest' is not a version number" in bad.stderr
    assert cli("unarchive", "iris").code == 2
    missing = cli("archive", "alpha/nothing")
    assert missing.code == 3
