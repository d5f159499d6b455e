"""scikit-learn estimators as its user guide fits them, saved with skops (`skops.io.dump`), served as ONNX."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.zoo.catalog import Built, ZooModel

ROWS = 6


def _iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


def _diabetes() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    return x.astype(np.float32), y


def _rows(x: np.ndarray) -> np.ndarray:
    # Spread over the classes of the ordered data sets (iris is sorted by class).
    return x[np.linspace(0, len(x) - 1, ROWS).astype(int)]


def _dump(estimator: Any, path: Path) -> None:
    import skops.io as sio

    sio.dump(estimator, path)


def _classifier(make: Callable[[], Any], filename: str) -> Callable[[Path], Built]:
    def build(folder: Path) -> Built:
        x, y = _iris()
        estimator = make().fit(x, y)
        path = folder / filename
        _dump(estimator, path)
        rows = _rows(x)
        outputs = {"label": np.asarray(estimator.predict(rows), dtype=np.int64)}
        if hasattr(estimator, "predict_proba"):
            outputs["probabilities"] = np.asarray(estimator.predict_proba(rows), dtype=np.float32)
        return Built(path, {"input": rows}, outputs)

    build.__name__ = f"build_{filename.split('.')[0]}"
    return build


def _regressor(make: Callable[[], Any], filename: str) -> Callable[[Path], Built]:
    def build(folder: Path) -> Built:
        x, y = _diabetes()
        estimator = make().fit(x, y)
        path = folder / filename
        _dump(estimator, path)
        rows = _rows(x)
        return Built(path, {"input": rows}, {"variable": np.asarray(estimator.predict(rows), np.float32)[:, None]})

    build.__name__ = f"build_{filename.split('.')[0]}"
    return build


def kmeans(folder: Path) -> Built:
    from sklearn.cluster import KMeans

    x, _ = _iris()
    estimator = KMeans(n_clusters=3, n_init=3, random_state=0).fit(x)
    path = folder / "sklearn-kmeans.skops"
    _dump(estimator, path)
    rows = _rows(x)
    return Built(
        path,
        {"input": rows},
        {"label": estimator.predict(rows).astype(np.int64), "scores": estimator.transform(rows).astype(np.float32)},
    )


def dataframe_pipeline(folder: Path) -> Built:
    """skl2onnx's ColumnTransformer tutorial shape: a DataFrame with numeric and string columns, fitted as is."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    rows = 120
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 12, rows).round(),
            "fare": rng.gamma(2.0, 15.0, rows),
            "embarked": rng.choice(["S", "C", "Q"], rows),
            "pclass": rng.integers(1, 4, rows),
        }
    )
    survived = ((frame["fare"] > 25) & (frame["pclass"] < 3)).astype(int)
    prepare = ColumnTransformer(
        [
            ("numeric", StandardScaler(), ["age", "fare"]),
            ("category", OneHotEncoder(handle_unknown="ignore"), ["embarked", "pclass"]),
        ]
    )
    pipeline = Pipeline([("prepare", prepare), ("classifier", LogisticRegression())]).fit(frame, survived)
    path = folder / "titanic.skops"
    _dump(pipeline, path)
    batch = frame.iloc[:ROWS]
    inputs = {
        "age": batch[["age"]].to_numpy(np.float32),
        "fare": batch[["fare"]].to_numpy(np.float32),
        "embarked": batch[["embarked"]].to_numpy(object),
        "pclass": batch[["pclass"]].to_numpy(np.int64),
    }
    return Built(
        path,
        inputs,
        {
            "label": pipeline.predict(batch).astype(np.int64),
            "probabilities": pipeline.predict_proba(batch).astype(np.float32),
        },
    )


def _scaler_logreg() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))


def _column_transformer() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    # Column 3 (petal width, 0.1 to 2.5 in steps of 0.1) stands in for a categorical column given as numbers.
    columns = ColumnTransformer(
        [
            ("numeric", StandardScaler(), [0, 1, 2]),
            ("category", OneHotEncoder(handle_unknown="ignore"), [3]),
        ]
    )
    return Pipeline([("columns", columns), ("classifier", LogisticRegression(max_iter=500))])


def _sk(module: str, name: str, **params: Any) -> Callable[[], Any]:
    import importlib

    def make() -> Any:
        return getattr(importlib.import_module(module), name)(**params)

    return make


CLASSIFIERS = [
    ("sklearn-pipeline-scaler-logreg", "make_pipeline(StandardScaler(), LogisticRegression())", _scaler_logreg),
    (
        "sklearn-pipeline-columntransformer",
        "Pipeline(ColumnTransformer(StandardScaler, OneHotEncoder(handle_unknown='ignore')), LogisticRegression)",
        _column_transformer,
    ),
    ("sklearn-logreg", "LogisticRegression()", _sk("sklearn.linear_model", "LogisticRegression", max_iter=500)),
    (
        "sklearn-svc-proba",
        "SVC(probability=True)",
        _sk("sklearn.svm", "SVC", probability=True, random_state=0),
    ),
    (
        "sklearn-random-forest-classifier",
        "RandomForestClassifier(n_estimators=10)",
        _sk("sklearn.ensemble", "RandomForestClassifier", n_estimators=10, max_depth=5, random_state=0),
    ),
    (
        "sklearn-extra-trees-classifier",
        "ExtraTreesClassifier(n_estimators=10)",
        _sk("sklearn.ensemble", "ExtraTreesClassifier", n_estimators=10, max_depth=5, random_state=0),
    ),
    (
        "sklearn-gradient-boosting-classifier",
        "GradientBoostingClassifier(n_estimators=10)",
        _sk("sklearn.ensemble", "GradientBoostingClassifier", n_estimators=10, random_state=0),
    ),
    (
        "sklearn-hist-gradient-boosting-classifier",
        "HistGradientBoostingClassifier(max_iter=10)",
        _sk("sklearn.ensemble", "HistGradientBoostingClassifier", max_iter=10, random_state=0),
    ),
    (
        "sklearn-mlp-classifier",
        "MLPClassifier(hidden_layer_sizes=(8,))",
        _sk("sklearn.neural_network", "MLPClassifier", hidden_layer_sizes=(8,), max_iter=300, random_state=0),
    ),
]
REGRESSORS = [
    ("sklearn-linear-regression", "LinearRegression()", _sk("sklearn.linear_model", "LinearRegression")),
    ("sklearn-ridge", "Ridge(alpha=1.0)", _sk("sklearn.linear_model", "Ridge", alpha=1.0)),
    (
        "sklearn-random-forest-regressor",
        "RandomForestRegressor(n_estimators=10)",
        _sk("sklearn.ensemble", "RandomForestRegressor", n_estimators=10, max_depth=5, random_state=0),
    ),
    (
        "sklearn-extra-trees-regressor",
        "ExtraTreesRegressor(n_estimators=10)",
        _sk("sklearn.ensemble", "ExtraTreesRegressor", n_estimators=10, max_depth=5, random_state=0),
    ),
    (
        "sklearn-gradient-boosting-regressor",
        "GradientBoostingRegressor(n_estimators=10)",
        _sk("sklearn.ensemble", "GradientBoostingRegressor", n_estimators=10, random_state=0),
    ),
    (
        "sklearn-hist-gradient-boosting-regressor",
        "HistGradientBoostingRegressor(max_iter=10)",
        _sk("sklearn.ensemble", "HistGradientBoostingRegressor", max_iter=10, random_state=0),
    ),
    (
        "sklearn-mlp-regressor",
        "MLPRegressor(hidden_layer_sizes=(8,))",
        _sk("sklearn.neural_network", "MLPRegressor", hidden_layer_sizes=(8,), max_iter=300, random_state=0),
    ),
]

# Regression targets of the diabetes set are in the hundreds: float32 ONNX arithmetic drifts by ~1e-4 of that.
# skl2onnx encodes OneHotEncoder categories only as int64 or strings; fitted on a numeric array they are floats.
CONVERTER_LIMITS = {"sklearn-pipeline-columntransformer": (("onnx", "export the pipeline yourself with skl2onnx"),)}
MODELS = [
    *(
        ZooModel(
            name,
            "sklearn",
            f"{recipe}.fit(iris); skops.io.dump",
            f"{name}.skops",
            _classifier(make, f"{name}.skops"),
            served=() if name in CONVERTER_LIMITS else ("onnx",),
            failed_conversions=CONVERTER_LIMITS.get(name, ()),
        )
        for name, recipe, make in CLASSIFIERS
    ),
    *(
        ZooModel(
            name,
            "sklearn",
            f"{recipe}.fit(diabetes); skops.io.dump",
            f"{name}.skops",
            _regressor(make, f"{name}.skops"),
            atol=1e-3,
        )
        for name, recipe, make in REGRESSORS
    ),
    ZooModel(
        "sklearn-dataframe-columntransformer",
        "sklearn",
        "Pipeline(ColumnTransformer(StandardScaler on age, fare; OneHotEncoder on embarked (str), pclass (int)), "
        "LogisticRegression).fit(DataFrame); skops.io.dump",
        "titanic.skops",
        dataframe_pipeline,
        notes="one [N, 1] input per column (FP32, BYTES, INT64); MLflow takes the rows as dataframe_split/records",
        protocols=("v2-json", "v2-binary", "tfserving", "mlflow", "mlflow-dataframe"),
    ),
    ZooModel(
        "sklearn-kmeans",
        "sklearn",
        "KMeans(n_clusters=3).fit(iris); skops.io.dump",
        "sklearn-kmeans.skops",
        kmeans,
        atol=1e-3,
        notes="outputs label (cluster) and scores (distance to each centre)",
    ),
]
