"""scikit-learn through skops: only trusted types load, and estimators are described with skl2onnx's names."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from registry.formats import detect
from registry.formats.base import Inspection, ModelFileError
from registry.formats.sklearn import FORMAT as SKLEARN
from registry.formats.sklearn import estimator_inspection, is_trusted_type
from runtimes.tensors import Signature, TensorSpec
from tests.registry import model_files

INPUT = TensorSpec(name="input", datatype="FP32", shape=[-1, 4])
CLASSIFIER_OUTPUTS = [
    TensorSpec(name="label", datatype="INT64", shape=[-1]),
    TensorSpec(name="probabilities", datatype="FP32", shape=[-1, 3]),
]


def sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def test_a_forest_loads_with_its_tree_type_trusted(tmp_path: Path) -> None:
    import skops.io as sio

    path = model_files.skops_file(tmp_path / "forest.skops", kind="forest")
    assert sio.get_untrusted_types(file=str(path)) == ["sklearn.tree._tree.Tree"]
    assert detect(path, path.name).name == "sklearn"
    assert SKLEARN.inspect(path) == Inspection(
        signature=Signature(inputs=[INPUT], outputs=CLASSIFIER_OUTPUTS),
        framework="sklearn",
        framework_version=sklearn_version(),
        metadata={"estimator": "sklearn.ensemble._forest.RandomForestClassifier", "classes": ["0", "1", "2"]},
    )


def test_a_regressor_has_one_variable_output(tmp_path: Path) -> None:
    path = model_files.skops_file(tmp_path / "reg.skops", kind="regressor")
    assert SKLEARN.inspect(path) == Inspection(
        signature=Signature(inputs=[INPUT], outputs=[TensorSpec(name="variable", datatype="FP32", shape=[-1, 1])]),
        framework="sklearn",
        framework_version=sklearn_version(),
        metadata={"estimator": "sklearn.linear_model._base.LinearRegression"},
    )


def test_a_user_function_is_refused_by_name(tmp_path: Path) -> None:
    path = model_files.skops_with_custom_function(tmp_path / "custom.skops")
    with pytest.raises(ModelFileError) as caught:
        SKLEARN.inspect(path)
    assert caught.value.code == "skops_untrusted_types"
    assert caught.value.detail == {"types": ["tests.registry.model_files.double"]}
    assert "tests.registry.model_files.double" in caught.value.message
    assert "scikit-learn, numpy and scipy" in caught.value.message


@pytest.mark.parametrize(
    ("module", "name", "argument"),
    [
        ("builtins", "eval", "open({marker!r}, 'w').write('pwned')"),
        ("builtins", "exec", "open({marker!r}, 'w').write('pwned')"),
        ("os", "system", "touch {marker}"),
        ("numpy", "save", "{marker}"),
    ],
)
def test_a_file_that_asks_the_loader_to_call_a_function_is_refused(
    tmp_path: Path, module: str, name: str, argument: str
) -> None:
    marker = tmp_path / "pwned"
    path = model_files.skops_calling(tmp_path / "evil.skops", module, name, argument.format(marker=str(marker)))
    assert SKLEARN.sniff(path)
    with pytest.raises(ModelFileError) as caught:
        SKLEARN.inspect(path)
    assert caught.value.code == "skops_untrusted_types"
    assert caught.value.detail == {"types": [f"{module}.{name}"]}
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "trusted"),
    [
        ("sklearn.tree._tree.Tree", True),
        ("sklearn.linear_model._logistic.LogisticRegression", True),
        ("numpy.ndarray", True),
        ("scipy.sparse._csr.csr_matrix", True),
        ("builtins.int", True),
        ("builtins.slice", True),
        ("builtins.eval", False),
        ("builtins.getattr", False),
        ("builtins.open", False),
        ("builtins.type", False),
        ("numpy.load", False),
        ("numpy.memmap", False),
        ("scipy.io._netcdf.netcdf_file", False),
        ("sklearn.datasets.fetch_openml", False),
        ("sklearn.utils._testing.TempMemmap", False),
        ("numpy.f2py.__main__.main", False),
        ("sklearn.metrics._regression.r2_score", False),
        ("sklearn.no_such_module.Thing", False),
        ("sklearn.tree._tree.NoSuchClass", False),
        ("sklearnx.Thing", False),
        ("os.system", False),
        ("__main__.MyTransformer", False),
    ],
)
def test_only_classes_from_the_trusted_packages_are_trusted(name: str, trusted: bool) -> None:
    assert is_trusted_type(name) is trusted


def test_a_skops_file_with_a_broken_schema_is_invalid(tmp_path: Path) -> None:
    path = model_files.zip_with_member(tmp_path / "broken.skops", "schema.json", b"{not json")
    assert SKLEARN.sniff(path)
    with pytest.raises(ModelFileError) as caught:
        SKLEARN.inspect(path)
    assert caught.value.code == "invalid_skops"


def test_a_skops_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    path = model_files.onnx_file(tmp_path / "m.skops")
    assert not SKLEARN.sniff(path)
    with pytest.raises(ModelFileError) as caught:
        SKLEARN.inspect(path)
    assert caught.value.code == "zip_corrupt"


def test_string_classes_give_a_bytes_label() -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = model_files.training_data()
    estimator = LogisticRegression().fit(x, np.array(["cat", "dog", "emu"])[y])
    inspection = estimator_inspection(estimator)
    assert inspection.signature.outputs == [
        TensorSpec(name="label", datatype="BYTES", shape=[-1]),
        TensorSpec(name="probabilities", datatype="FP32", shape=[-1, 3]),
    ]
    assert inspection.metadata["classes"] == ["cat", "dog", "emu"]


def test_an_unfitted_estimator_is_refused() -> None:
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(ModelFileError) as caught:
        estimator_inspection(LogisticRegression())
    assert caught.value.code == "sklearn_not_fitted"
    assert "LogisticRegression" in caught.value.message


def test_a_multi_target_regressor_has_one_column_per_target() -> None:
    from sklearn.linear_model import LinearRegression

    x, _ = model_files.training_data()
    inspection = estimator_inspection(LinearRegression().fit(x, x[:, :2]))
    assert inspection.signature.outputs == [TensorSpec(name="variable", datatype="FP32", shape=[-1, 2])]


def test_a_pipeline_is_described_by_its_first_and_last_steps() -> None:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, _ = model_files.training_data()
    pipeline = make_pipeline(StandardScaler(), RandomForestRegressor(n_estimators=2, random_state=0))
    inspection = estimator_inspection(pipeline.fit(x, x[:, :3]))
    assert inspection.signature == Signature(
        inputs=[INPUT], outputs=[TensorSpec(name="variable", datatype="FP32", shape=[-1, 3])]
    )
    assert inspection.metadata == {"estimator": "sklearn.pipeline.Pipeline"}


def test_a_classifier_without_probabilities_has_only_a_label() -> None:
    from sklearn.svm import SVC

    x, y = model_files.training_data()
    inspection = estimator_inspection(SVC().fit(x, y))
    assert inspection.signature.outputs == [TensorSpec(name="label", datatype="INT64", shape=[-1])]


def test_a_transformer_is_not_a_predictor() -> None:
    from sklearn.preprocessing import StandardScaler

    x, _ = model_files.training_data()
    with pytest.raises(ModelFileError) as caught:
        estimator_inspection(StandardScaler().fit(x))
    assert caught.value.code == "sklearn_not_a_predictor"


def test_the_skops_schema_member_decides_the_sniff(tmp_path: Path) -> None:
    path = tmp_path / "m.skops"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data/schema.json", "{}")
    assert not SKLEARN.sniff(path)
