"""The README's quickstart, run as written against a live server: every shell block in order in one bash, then the
tritonclient HTTP block. What the test changes, and nothing else: the server's address (a free port, not 8000) and
the token the reader copies in step 1; and `curl` fails on an HTTP error (`--fail-with-body`), so a step the server
refuses fails the test instead of printing an error a reader would have to spot.

The gRPC block is left to tests/test_stack_smoke.py, which runs tritonclient.grpc against `make run`'s own stack
(a gRPC server in this process would share the web server's router across two event loops)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deployments.models import Endpoint
from teams.choices import Role
from tests.teams.factories import create_team

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
TOKEN_LINE = "export MD=http://127.0.0.1:8000 TOKEN=mdk_...    # the token you copied"


def quickstart_blocks() -> list[tuple[str, str]]:
    """(language, code) of each fenced block between the README's Quickstart heading and the next heading."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.DOTALL)


def test_the_readme_quickstart_runs_as_written(live_url: str, make_member, tmp_path: Path) -> None:
    member = make_member(team=create_team(slug="demo", name="Demo"), role=Role.DEVELOPER, username="reader")
    address = live_url.removeprefix("http://")
    blocks = quickstart_blocks()
    shell = [code for language, code in blocks if language == "sh"]
    python = [code for language, code in blocks if language == "python"]
    assert len(shell) == 8 and len(python) == 2, [language for language, _ in blocks]
    assert TOKEN_LINE in shell[1], "step 1 sets MD and TOKEN on this line; the test puts its own values there"

    script = "\n".join(shell).replace(TOKEN_LINE, f"export MD={live_url} TOKEN={member.token}")
    script = script.replace("127.0.0.1:8000", address)
    # The reader's folder: `make run` made .venv there.
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    harness = 'set -eu\ncurl() { command curl --fail-with-body --max-time 60 "$@"; }\n'
    run = subprocess.run(
        ["bash", "-c", harness + script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"},
    )
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert (tmp_path / "iris.onnx").exists() and (tmp_path / "sample.json").exists()

    endpoint = Endpoint.objects.get(name="iris-staging")
    actions = list(endpoint.releases.order_by("number").values_list("action", "primary__number", "canary__number"))
    # Created on the upload, a canary of the int8 conversion, its promotion, and the rollback to the upload.
    assert actions == [("create", 1, None), ("canary", 1, 2), ("promote", 2, None), ("rollback", 1, None)]

    (http_block,) = [code for code in python if "tritonclient.http" in code]
    answered = subprocess.run(
        [sys.executable, "-c", http_block.replace("127.0.0.1:8000", address)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TOKEN": member.token},
    )
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip().endswith(" 1"), answered.stdout  # the version that answered: the rollback's
