"""`modeldeck example iris`: the quickstart's model and sample, written locally, pushed, deployed and called."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_iris

from modeldeck.commands.example import IRIS_BIAS, IRIS_WEIGHTS
from tests.cli.conftest import Cli

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_example_model_is_the_iris_classifier_it_says(cli: Cli, tmp_path) -> None:
    run = cli("example", "iris", "--dir", str(tmp_path / "ex"), "--json")
    assert run.code == 0, run.stderr
    assert run.json["model"] == str(tmp_path / "ex" / "iris.onnx")
    session = ort.InferenceSession(run.json["model"], providers=["CPUExecutionProvider"])
    x, y = load_iris(return_X_y=True)
    probs = session.run(None, {"x": x.astype(np.float32)})[0]
    logits = x @ np.asarray(IRIS_WEIGHTS) + np.asarray(IRIS_BIAS)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(axis=1, keepdims=True), rtol=1e-4, atol=1e-6)
    assert (probs.argmax(axis=1) == y).mean() > 0.95
    sample = json.loads((tmp_path / "ex" / "sample.json").read_text())
    assert list(session.run(None, {"x": np.asarray(sample["x"], np.float32)})[0].argmax(axis=1)) == [0, 1, 2]

    again = cli("example", "iris", "--dir", str(tmp_path / "ex"))
    assert again.code == 2 and "exists already; pass --force" in again.stderr
    assert cli("example", "iris", "--dir", str(tmp_path / "ex"), "--force").code == 0


def test_example_push_deploy_predict(cli: Cli, tmp_path) -> None:
    """The README's quickstart in four commands, as a new user runs them."""
    assert cli("example", "iris", "--dir", str(tmp_path)).code == 0
    model, sample = str(tmp_path / "iris.onnx"), str(tmp_path / "sample.json")
    pushed = cli("push", model, "--model", "alpha/iris", "--sample", sample, "--wait", "--json")
    assert pushed.code == 0, pushed.stderr
    number = pushed.json["version"]["number"]
    deployed = cli("deploy", "iris-try", "--model", "alpha/iris", "--version", str(number), "--json")
    assert deployed.code == 0, deployed.stderr
    answer = cli("--json", "predict", "iris-try", "--json", sample)
    assert answer.code == 0, answer.stderr
    (probs,) = answer.json["outputs"]
    assert probs["name"] == "probs" and probs["shape"] == [3, 3]
    assert list(np.asarray(probs["data"]).reshape(3, 3).argmax(axis=1)) == [0, 1, 2]
