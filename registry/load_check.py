"""Check that a model loads and runs in the runtime that will serve it, before its version becomes `ready`.

`onnx.checker` passes models no runtime can run (an op in a domain nobody registered), and a model can ask for more
memory than a process has. So every servable file is loaded and warmed by its serving runtime (what a web process
does before it takes traffic) in a child process (`python -m registry.load_check FORMAT PATH MEMORY_BYTES`, the
signature as JSON on stdin) under an address-space limit and a time limit: a hostile file costs that child, never
the web process or the worker. The child prints one JSON object on stdout: {} or {"error": ..., "memory": bool}.

Beside the benchmark child (registry/benchmark.py), below the services and the conversion steps that both run it.
"""

from __future__ import annotations

import json
import logging
import re
import resource
import signal
import subprocess
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from registry.formats.base import ModelFileError, error_summary
from runtimes.tensors import Signature

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # registry/ -> the repository root
RUNTIME_LABELS = {"onnx": "onnxruntime", "tflite": "LiteRT"}
# Files that passed, by (format, sha256, signature, memory limit): the same bytes load the same way in this process's
# runtimes.
_PASSED: OrderedDict[tuple[str, str, str, int], None] = OrderedDict()
_PASSED_MAX = 256
_passed_lock = threading.Lock()
# An absolute path of two or more parts (a server's artifact or temp folder, a runtime's build tree).
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/[^\s'\"/:]+(?:/[^\s'\"/:]+)+")
# onnxruntime opens every message with its status: "[ONNXRuntimeError] : 1 : FAIL : ".
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
_OUT_OF_MEMORY = ("failed to allocate memory", "bad_alloc", "bad allocation", "out of memory")


def without_paths(text: str, path: Path | None = None) -> str:
    """The text with the model's own path said as "the model file" and any other absolute path left out."""
    if path is not None:
        text = text.replace(str(path), "the model file")
    return _ABSOLUTE_PATH.sub(lambda match: "…" + match.group(0)[len(match.group(0).rstrip(".,;")) :], text)


def load_error_text(exc: BaseException, path: Path | None = None) -> str:
    """Why a runtime could not load or run a model, for the model's team: the root cause, without server paths."""
    return _ORT_PREFIX.sub("", without_paths(error_summary(exc), path)).rstrip(".")


def is_servable(format_name: str, metadata: dict[str, Any]) -> bool:
    """Whether a serving runtime runs files of this format as they are (a ZipMap model is served rewritten)."""
    return format_name in RUNTIME_LABELS and not metadata.get("serving_rewrite")


def runtime_load_check(
    *,
    format_name: str,
    path: Path,
    signature: Signature,
    sha256: str = "",
    memory_mb: int | None = None,
    timeout: float | None = None,
) -> None:
    """Load and warm the file in its serving runtime in a child process; raise ModelFileError when it cannot.

    The limits default to MODELDECK_LOAD_CHECK_MEMORY_MB and MODELDECK_LOAD_CHECK_TIMEOUT_SECONDS. Given the file's
    sha256, bytes that passed once in this process are not checked again.
    """
    from django.conf import settings

    memory_mb = memory_mb or settings.MODELDECK_LOAD_CHECK_MEMORY_MB
    timeout = timeout or settings.MODELDECK_LOAD_CHECK_TIMEOUT_SECONDS
    key = (format_name, sha256, json.dumps(signature.to_dict(), sort_keys=True), memory_mb)
    if sha256 and key in _PASSED:
        return
    runtime = RUNTIME_LABELS[format_name]
    # Fixed argv: our interpreter and module; the format is a choice value and the path one we made.
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "registry.load_check", format_name, str(path), str(memory_mb * 2**20)],
        cwd=str(PROJECT_ROOT),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        stdout, stderr = process.communicate(json.dumps(signature.to_dict()).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise ModelFileError(
            "runtime_load_failed",
            f"{runtime}, which serves this model, did not load and run it within {timeout:g} seconds.",
            {"runtime": runtime, "reason": "timeout", "timeout_seconds": timeout},
        ) from None
    except BaseException:
        # A task's time limit or a closed request interrupts the wait: never leave the child running.
        process.kill()
        process.communicate()
        raise
    try:
        outcome: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        outcome = {"error": _how_it_ended(process.returncode)}
    if process.returncode == 0 and not outcome.get("error"):
        with _passed_lock:
            _PASSED[key] = None
            while len(_PASSED) > _PASSED_MAX:
                _PASSED.popitem(last=False)
        return
    logger.warning("%s could not load %s: %s", runtime, path, stderr.decode(errors="replace")[-2000:])
    if outcome.get("memory"):
        raise ModelFileError(
            "runtime_load_failed",
            f"{runtime}, which serves this model, needs more than {memory_mb} MiB of memory to load and run it.",
            {"runtime": runtime, "reason": "memory", "memory_mb": memory_mb},
        )
    raise ModelFileError(
        "runtime_load_failed",
        f"{runtime}, which serves this model, cannot load and run it: {outcome['error']}.",
        {"runtime": runtime, "reason": "load"},
    )


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the runtime crashed ({name})"
    return f"the runtime stopped with exit status {returncode}"


def main() -> None:
    format_name, path, memory_bytes = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    signature = Signature.from_dict(json.load(sys.stdin))
    # The runtimes are imported after the limit is set: their native allocations count against it too.
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    try:
        from runtimes import runtime_load

        runtime_load(format_name, path, signature)
    except MemoryError:
        print(json.dumps({"error": "out of memory", "memory": True}))
        return
    except Exception as exc:  # noqa: BLE001 - whatever the runtime raises is the answer, reported to the parent
        text = load_error_text(exc, path)
        print(json.dumps({"error": text, "memory": any(sign in text.lower() for sign in _OUT_OF_MEMORY)}))
        return
    print(json.dumps({}))


if __name__ == "__main__":
    main()
