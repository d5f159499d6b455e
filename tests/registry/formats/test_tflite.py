"""TensorFlow Lite: signatures read through LiteRT, and broken or hostile flatbuffers refused without a crash."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from registry.formats.base import Inspection, ModelFileError
from registry.formats.tflite import FORMAT as TFLITE
from runtimes.tensors import Signature, TensorSpec
from tests.registry import model_files

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def tflite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_files.tflite_file(tmp_path_factory.mktemp("tflite") / "model.tflite")


def test_sniff_looks_for_the_file_identifier(tmp_path: Path, tflite_path: Path) -> None:
    assert TFLITE.sniff(tflite_path)
    path = tmp_path / "x"
    for content, expected in [(b"\x1c\x00\x00\x00TFL3", True), (b"TFL3\x00\x00\x00\x00", False), (b"\x00", False)]:
        path.write_bytes(content)
        assert TFLITE.sniff(path) is expected
    assert not TFLITE.sniff(tmp_path / "missing")


def test_a_model_without_signatures_uses_the_tensor_names(tmp_path: Path, tflite_path: Path) -> None:
    path = model_files.tflite_without_signatures(tflite_path, tmp_path / "nosig.tflite")
    assert TFLITE.inspect(path) == Inspection(
        signature=Signature(
            inputs=[TensorSpec(name="x", datatype="FP32", shape=[-1, 4])],
            outputs=[TensorSpec(name="StatefulPartitionedCall_1", datatype="FP32", shape=[-1, 3])],
        ),
        framework="tflite",
        metadata={"signature_key": None},
    )


@pytest.mark.parametrize(
    "content",
    [
        b"\x1c\x00\x00\x00TFL3",  # the header alone
        b"\xff\xff\xff\x00TFL3" + bytes(64),  # root table far past the end
        b"\x04\x00\x00\x00TFL3" + bytes(64),  # root table inside the header
        b"\x1c\x00\x00\x00TFL3" + bytes(64),  # zeros
    ],
)
def test_broken_headers_are_refused_before_the_interpreter_reads_them(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as caught:
        TFLITE.inspect(path)
    assert caught.value.code == "invalid_tflite"


def test_truncated_and_random_files_are_invalid(tmp_path: Path, tflite_path: Path) -> None:
    for cut in (12, 64, 100, 500, 1000):
        path = tmp_path / f"cut{cut}.tflite"
        path.write_bytes(tflite_path.read_bytes()[:cut])
        with pytest.raises(ModelFileError) as caught:
            TFLITE.inspect(path)
        assert caught.value.code == "invalid_tflite"
    noise = tmp_path / "noise.tflite"
    noise.write_bytes(tflite_path.read_bytes()[:8] + model_files.random_bytes(tmp_path / "r", 4096).read_bytes())
    with pytest.raises(ModelFileError) as caught:
        TFLITE.inspect(noise)
    assert caught.value.code == "invalid_tflite"
    assert caught.value.message == (
        "The file is not a loadable TensorFlow Lite model: The model is not a valid Flatbuffer buffer."
    )


def test_corrupted_models_never_crash_the_process(tflite_path: Path, tmp_path: Path) -> None:
    # Run in a child process: a native crash there fails this test instead of killing the test run.
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        import numpy as np
        from registry.formats.base import ModelFileError
        from registry.formats.tflite import FORMAT

        original = Path(sys.argv[1]).read_bytes()
        target = Path(sys.argv[2])
        variants = [original[:cut] for cut in range(8, len(original), 16)]
        # Seed 1 once produced a signature tensor index that made LiteRT's bindings raise TypeError.
        for seed in (0, 1):
            rng = np.random.default_rng(seed)
            for flips in (1, 2, 4, 16):
                for _ in range(300):
                    data = bytearray(original)
                    for at in rng.integers(8, len(data), flips):
                        data[at] = int(rng.integers(0, 256))
                    variants.append(bytes(data))
        outcomes = {"refused": 0, "inspected": 0}
        for data in variants:
            target.write_bytes(data)
            try:
                FORMAT.inspect(target)
                outcomes["inspected"] += 1
            except ModelFileError:
                outcomes["refused"] += 1
        print(outcomes)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tflite_path), str(tmp_path / "variant.tflite")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert "'refused'" in result.stdout
