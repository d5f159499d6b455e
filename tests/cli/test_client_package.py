"""The client package stands alone: importing the CLI loads no Django, and the console script is installed."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.cli.conftest import MODELDECK


def test_importing_the_cli_loads_no_django() -> None:
    code = (
        "import json, sys, modeldeck, modeldeck.cli; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    loaded = set(json.loads(done.stdout))
    assert {"modeldeck", "httpx", "rich"} <= loaded
    assert loaded.isdisjoint({"django", "rest_framework", "celery", "numpy", "onnxruntime", "config"})


def test_the_console_script_prints_help_with_the_exit_codes() -> None:
    done = subprocess.run([str(MODELDECK), "--help"], capture_output=True, text=True, check=True)
    assert "exit codes:" in done.stdout
    assert "6  parity failed" in done.stdout
    assert "8  connection error or timeout" in done.stdout
    version = subprocess.run([sys.executable, "-m", "modeldeck", "--version"], capture_output=True, text=True)
    assert (version.returncode, version.stdout.strip()) == (0, "modeldeck 0.1.0")
