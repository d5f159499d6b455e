"""ONNX files as skl2onnx's own tutorials write them: the default export (ZipMap on) and a text pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.zoo.catalog import Built, ZooModel

ROWS = 6


def _iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


def _rows(x: np.ndarray) -> np.ndarray:
    return x[np.linspace(0, len(x) - 1, ROWS).astype(int)]


def skl2onnx_default_logreg(folder: Path) -> Built:
    """skl2onnx's "Train, convert and predict" tutorial: `to_onnx(clr, X[:1])`, integer classes, ZipMap on."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = _iris()
    classifier = LogisticRegression(max_iter=500).fit(x, y)
    path = folder / "logreg_iris.onnx"
    path.write_bytes(to_onnx(classifier, x[:1]).SerializeToString())
    rows = _rows(x)
    return Built(
        path,
        {"X": rows},
        {
            "output_label": classifier.predict(rows).astype(np.int64),
            "output_probability": classifier.predict_proba(rows).astype(np.float32),
        },
    )


def skl2onnx_default_forest_string_labels(folder: Path) -> Built:
    """The same recipe with string class labels: the label output is a string tensor, ZipMap keys are strings."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    x, y = _iris()
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    classifier = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(x, names)
    path = folder / "forest_iris.onnx"
    path.write_bytes(to_onnx(classifier, x[:1]).SerializeToString())
    rows = _rows(x)
    return Built(
        path,
        {"X": rows},
        {
            "output_label": classifier.predict(rows).astype(object),
            "output_probability": classifier.predict_proba(rows).astype(np.float32),
        },
    )


TEXTS = [
    "the service was quick and friendly",
    "terrible food and slow service",
    "friendly staff, great coffee",
    "cold soup, rude waiter",
    "great value and quick",
    "slow and rude",
]


def text_tfidf(folder: Path) -> Built:
    """skl2onnx's TfidfVectorizer example: a text pipeline with a string input of shape [None, 1]."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    labels = np.array([1, 0, 1, 0, 1, 0])
    pipeline = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, labels)
    onx = to_onnx(
        pipeline,
        initial_types=[("text", StringTensorType([None, 1]))],
        options={LogisticRegression: {"zipmap": False}},
    )
    path = folder / "sentiment.onnx"
    path.write_bytes(onx.SerializeToString())
    rows = ["quick friendly coffee", "rude and slow soup", "great service"]
    return Built(
        path,
        {"text": np.array(rows, dtype=object)[:, None]},
        {
            "label": pipeline.predict(rows).astype(np.int64),
            "probabilities": pipeline.predict_proba(rows).astype(np.float32),
        },
    )


MODELS = [
    ZooModel(
        "onnx-skl2onnx-default-logreg",
        "onnx",
        "skl2onnx to_onnx(LogisticRegression().fit(iris), X[:1]) with its defaults (ZipMap on)",
        "logreg_iris.onnx",
        skl2onnx_default_logreg,
        served=("onnx",),
        notes="output_probability served as FP32 [N, classes] (ZipMap removed by a recorded rewrite)",
    ),
    ZooModel(
        "onnx-skl2onnx-default-string-labels",
        "onnx",
        "skl2onnx to_onnx(RandomForestClassifier().fit(iris, names), X[:1]): string labels, ZipMap on",
        "forest_iris.onnx",
        skl2onnx_default_forest_string_labels,
        served=("onnx",),
        notes="output_label is BYTES; output_probability FP32 [N, classes] in the classes' order",
    ),
    ZooModel(
        "onnx-text-tfidf",
        "onnx",
        "make_pipeline(TfidfVectorizer(), LogisticRegression()), to_onnx with StringTensorType([None, 1])",
        "sentiment.onnx",
        text_tfidf,
        served=("onnx",),
        notes="input 'text' is BYTES [N, 1]: strings in JSON, length-prefixed bytes in binary",
    ),
]
