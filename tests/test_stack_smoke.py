"""`make run`'s stack on the embedded defaults, in a temporary directory: up, healthy, login works, Ctrl-C stops all."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc
import websockets
import websockets.sync.client

from tests.registry.model_files import keras_file

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.heavy, pytest.mark.stack]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Output:
    """Collect a process's output lines on a thread so the test can wait for a line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            time.sleep(0.2)
        raise AssertionError(
            f"no line matching {pattern!r} within {timeout} s; output:\n" + "\n".join(self.lines[-60:])
        )


class TeamStream:
    """A team's event socket (/ws/teams/{team}/events/) read on a thread, as a logged-in page reads it."""

    def __init__(self, base: str, team: str, cookie: str) -> None:
        url = base.replace("http://", "ws://") + f"/ws/teams/{team}/events/"
        self._open = contextlib.ExitStack()
        connection = websockets.sync.client.connect(url, additional_headers={"Cookie": cookie, "Origin": base})
        self.socket = self._open.enter_context(connection)
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                self.events.append(json.loads(self.socket.recv()))

    def close(self) -> None:
        self._open.close()

    def seen(self) -> set[tuple[str, int | None, str]]:
        """(kind, version number for version events, status) of each event of model iris so far."""
        return {
            (e["kind"], e["data"]["number"] if e["kind"] == "version" else None, e["data"]["status"])
            for e in list(self.events)
            if e["data"].get("model") == "iris"
        }


def _issue_token(opener: urllib.request.OpenerDirector, jar: http.cookiejar.CookieJar, base: str) -> str:
    """Create an API token through the logged-in session, as the tokens page does."""
    csrf = next(c.value or "" for c in jar if c.name == "csrftoken")
    request = urllib.request.Request(
        f"{base}/api/v1/teams/demo/tokens",
        data=json.dumps({"name": "smoke", "role": "developer"}).encode(),
        headers={"Content-Type": "application/json", "X-CSRFToken": csrf, "Referer": f"{base}/"},
    )
    with opener.open(request, timeout=10) as response:
        return str(json.load(response)["token"])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def start_stack(env: dict[str, str], port: int, grpc_port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *(sys.executable, "manage.py", "runstack", "--port", str(port), "--grpc-port", str(grpc_port)),
            *("--concurrency", "1"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so the test can "press Ctrl-C" on all of it
    )


def test_make_run_stack_comes_up_logs_in_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port, grpc_port = free_port(), free_port()
    # Not this test process's metrics folder either: runstack empties the one it uses.
    private = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "MODELDECK_PROMETHEUS_DIR", "PROMETHEUS_MULTIPROC_DIR"}
    env = {k: v for k, v in os.environ.items() if k not in private}
    env |= {"DJANGO_SETTINGS_MODULE": "config.settings.local", "MODELDECK_VAR_DIR": str(tmp_path / "var")}
    process = start_stack(env, port, grpc_port)
    output = Output(process)
    try:
        login = output.wait_for(r"Login: (\S+) / (\S+)", timeout=120)
        output.wait_for(rf"ModelDeck is up at http://127\.0\.0\.1:{port}/", timeout=120)
        base = f"http://127.0.0.1:{port}"

        # A real worker, fed by beat through the filesystem broker, reports in.
        deadline = time.monotonic() + 60
        while True:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
                health = json.load(response)
            assert response.status == 200
            assert health["status"] == "ok"
            if health["checks"]["worker"]["status"] == "ok":
                break
            assert time.monotonic() < deadline, f"worker never reported: {health}"
            time.sleep(1)

        # The printed login works.
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(f"{base}/accounts/login/", timeout=10).read()
        csrf = next(c.value or "" for c in jar if c.name == "csrftoken")
        form = urllib.parse.urlencode(
            {"username": login.group(1), "password": login.group(2), "csrfmiddlewaretoken": csrf}
        ).encode()
        request = urllib.request.Request(
            f"{base}/accounts/login/", data=form, headers={"Referer": f"{base}/accounts/login/"}
        )
        with opener.open(request, timeout=10) as response:
            page = response.read().decode()
            assert response.url == f"{base}/teams/demo/"  # the login lands on the team
        assert "Your role: <span" in page
        # Static files are served by WhiteNoise from the collected, hashed copies.
        css = re.search(r'href="(/static/css/app\.[0-9a-f]+\.css)"', page)
        assert css, "the stylesheet link is not a hashed WhiteNoise URL"
        assert opener.open(f"{base}{css.group(1)}", timeout=10).status == 200

        # The team's live stream, as the pages open it: with no Redis, the worker's events reach it through the
        # outbox the web process relays from (common/events.py).
        stream = TeamStream(base, "demo", "; ".join(f"{c.name}={c.value}" for c in jar))

        # The whole registry path on the embedded defaults: a Keras upload is inspected by the real worker.
        token = _issue_token(opener, jar, base)
        keras_path = keras_file(tmp_path / "iris.keras")
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
            assert api.post("/api/v1/models", json={"team": "demo", "name": "iris"}).status_code == 201
            with keras_path.open("rb") as handle:
                created = api.post("/api/v1/models/demo/iris/versions", files={"file": ("iris.keras", handle)})
            assert created.status_code == 201, created.text
            assert created.json()["status"] == "processing"
            deadline = time.monotonic() + 120
            while (version := api.get("/api/v1/models/demo/iris/versions/1").json())["status"] == "processing":
                assert time.monotonic() < deadline, "the worker never inspected the upload"
                time.sleep(1)
            assert version["status"] == "ready", version
            assert version["signature"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
            download = api.get("/api/v1/models/demo/iris/versions/1/artifact")
            assert download.content == keras_path.read_bytes()

            # ... and, without another click, converted to ONNX and TFLite, each with a passing parity report.
            deadline = time.monotonic() + 240
            while True:
                children = [v for v in api.get("/api/v1/models/demo/iris/versions").json() if v["parent"] == 1]
                if len(children) == 2:
                    break
                failed = api.get("/api/v1/jobs?team=demo&status=failed").json()
                assert not failed, failed
                assert time.monotonic() < deadline, "the worker never finished the automatic conversions"
                time.sleep(2)
            assert sorted(v["format"] for v in children) == ["onnx", "tflite"]
            assert all(v["parity"]["passed"] for v in children), [v["parity"]["reason"] for v in children]
            # Every step reached the browser's stream: the inspection, both jobs queued and done, both new versions.
            wanted = {("version", 1, "ready")} | {("version", v["number"], "ready") for v in children}
            wanted |= {("job", None, "queued"), ("job", None, "succeeded")}
            deadline = time.monotonic() + 10
            while not wanted <= stream.seen():
                assert time.monotonic() < deadline, f"the live stream missed {wanted - stream.seen()}"
                time.sleep(0.2)
            stream.close()

            # Deployed, it serves over all three protocols; a promote and a rollback reach the data plane.
            by_format = {v["format"]: v["number"] for v in children}
            made = api.post(
                "/api/v1/endpoints", json={"name": "iris-prod", "model": "demo/iris", "version": by_format["onnx"]}
            )
            assert made.status_code == 201, made.text
            assert api.get("/v2/health/ready").json() == {"ready": True}
            rows = [[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]]
            v2_body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": rows}]}

            def served() -> tuple[int, list[float]]:
                answer = api.post("/v2/models/iris-prod/infer", json=v2_body)
                assert answer.status_code == 200, answer.text
                return int(answer.json()["model_version"]), answer.json()["outputs"][0]["data"]

            version, values = served()
            assert version == by_format["onnx"]
            predictions = api.post("/v1/models/iris-prod:predict", json={"instances": rows}).json()["predictions"]
            mlflow = api.post("/mlflow/iris-prod/invocations", json={"inputs": rows}).json()["predictions"]
            assert [x for row in predictions for x in row] == [x for row in mlflow for x in row] == values
            # The gRPC server make run starts answers the same, to tritonclient.grpc with its defaults.
            with tritonclient.grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}") as triton:
                grpc_input = tritonclient.grpc.InferInput("x", [2, 4], "FP32")
                grpc_input.set_data_from_numpy(np.asarray(rows, dtype=np.float32))
                result = triton.infer("iris-prod", [grpc_input], headers={"authorization": f"Bearer {token}"})
            assert result.get_response().model_version == str(by_format["onnx"])
            assert result.as_numpy(result.get_response().outputs[0].name).ravel().tolist() == pytest.approx(values)
            promoted = api.post("/api/v1/endpoints/iris-prod/promote", json={"version": by_format["tflite"]})
            assert promoted.status_code == 201, promoted.text
            deadline = time.monotonic() + 10
            while (answer := served())[0] != by_format["tflite"]:
                assert time.monotonic() < deadline, "the promote never reached the data plane"
                time.sleep(0.05)
            assert answer[1] == pytest.approx(values, abs=1e-5)  # the TFLite conversion passed parity
            assert api.post("/api/v1/endpoints/iris-prod/rollback", json={}).status_code == 201
            deadline = time.monotonic() + 10
            while served()[0] != by_format["onnx"]:
                assert time.monotonic() < deadline, "the rollback never reached the data plane"
                time.sleep(0.05)

        with sqlite3.connect(tmp_path / "var" / "db.sqlite3") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert (tmp_path / "var" / "broker").is_dir()
    finally:
        pids = [int(m.group(2)) for line in output.lines if (m := re.match(r"started (\w+) \(pid (\d+)[,)]", line))]
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=60)
    assert code == 0, "\n".join(output.lines[-40:])
    assert len(pids) == 4  # web, grpc, worker, beat
    assert [pid for pid in pids if alive(pid)] == []
    assert output.lines[-1] == "stopped"
    # The terminal: each long step said what it did, then one box with the URL and the login, the worker's and
    # the scheduler's chatter in files instead.
    box = output.lines.index(next(line for line in output.lines if line.startswith("┌")))
    assert "ModelDeck is up at" in output.lines[box + 1] and "Login: " in output.lines[box + 2]
    assert any(line.startswith("Collecting static files") for line in output.lines[:box])
    assert not any("worker_heartbeat" in line or "SecurityWarning" in line for line in output.lines)
    for name in ("worker", "beat"):
        assert f"log: {tmp_path / 'var' / 'log' / name}.log" in "\n".join(output.lines)
    worker_log = (tmp_path / "var" / "log" / "worker.log").read_text()
    assert f"worker-{port}@" in worker_log and "worker_heartbeat" in worker_log

    # A restart finds the static files it collected and does not collect them again.
    process = start_stack(env, port, grpc_port)
    again = Output(process)
    try:
        again.wait_for(rf"ModelDeck is up at http://127\.0\.0\.1:{port}/", timeout=120)
        assert "Static files: unchanged since the last start" in again.lines
        assert not any(line.startswith("Collecting static files") for line in again.lines)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 0, "\n".join(again.lines[-40:])
