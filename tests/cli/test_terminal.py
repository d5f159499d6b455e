"""On a terminal the same commands draw rich progress bars and tables (the other tests run without one)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

import pytest

from tests.cli.conftest import MODELDECK, Cli
from tests.registry.model_files import onnx_file

pytestmark = pytest.mark.django_db(transaction=True)


def run_in_terminal(cli: Cli, *args: str) -> tuple[int, str]:
    """Run modeldeck with stdout and stderr on a pseudo-terminal and return what the terminal showed."""
    leader, follower = pty.openpty()
    env = cli.env(TERM="xterm-256color", COLUMNS="120", LINES="40")
    process = subprocess.Popen([str(MODELDECK), *args], stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not select.select([leader], [], [], 0.5)[0]:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        if process.poll() is None and time.monotonic() >= deadline:
            process.kill()
    return process.wait(timeout=10), b"".join(chunks).decode(errors="replace")


def test_push_and_convert_draw_progress_bars_on_a_terminal(cli: Cli, tmp_path) -> None:
    model = onnx_file(tmp_path / "wide.onnx", features=2000, classes=64)
    code, screen = run_in_terminal(
        cli, "push", str(model), "--model", "alpha/wide", "--convert", "onnx:float16", "--wait"
    )
    assert code == 0, screen
    assert "\x1b[" in screen  # colors and cursor movement: a live display
    assert "━" in screen  # rich's bar
    assert "uploading wide.onnx" in screen
    assert "convert job" in screen
    assert "passed" in screen
    # Not the plain log lines of a pipeline.
    assert "uploading wide.onnx: 0%" not in screen
