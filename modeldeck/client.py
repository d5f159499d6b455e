"""The ModelDeck Python SDK: typed calls over the REST API and the Open Inference Protocol.

    from modeldeck import Client

    with Client("http://127.0.0.1:8000", token="mdk_...") as client:
        version = client.upload_version("demo/iris", "iris.onnx", progress=lambda sent, total: ...)
        job = client.convert("demo/iris", version["number"], target="onnx", quantization="int8")
        job = client.wait_job(job["id"])
        client.create_endpoint("iris-staging", model="demo/iris", version=job["result_version"])
        client.predict("iris-staging", {"inputs": [...]})

Every failure raises a `modeldeck.errors.ModelDeckError` subclass built from the API's error shape.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeGuard, cast
from urllib.parse import quote

import httpx

from modeldeck import __version__
from modeldeck.errors import (
    ConnectionFailed,
    Invalid,
    JobFailed,
    ModelDeckError,
    NotFound,
    WaitTimeout,
    error_from_response,
)
from modeldeck.resources import (
    JOB_DONE_STATUSES,
    ChangeRequest,
    Endpoint,
    Job,
    Me,
    Model,
    Release,
    Rollout,
    RolloutStep,
    Version,
)

UploadProgress = Callable[[int, int], None]
JobProgress = Callable[[Job], None]
VersionProgress = Callable[[Version], None]

DEFAULT_TIMEOUT = 60.0
# An upload's answer comes once the server has stored, hashed and inspected the file: allow it time.
UPLOAD_READ_TIMEOUT = 900.0
DEFAULT_WAIT_TIMEOUT = 3600.0
# Reads are retried on a dropped connection (a web process restarting behind a load balancer); writes never are.
READ_RETRIES = 2
RETRY_PAUSE = 0.25


def model_reference_split(reference: str) -> tuple[str, str]:
    """Split "team/model" into its two slugs."""
    team, _, name = reference.strip().partition("/")
    if not team or not name or "/" in name:
        raise Invalid(f"Name the model as 'team/model', not {reference!r}.", code="invalid_model_reference")
    return team, name


def _segment(value: str | int) -> str:
    return quote(str(value), safe="")


class Client:
    """A connection to one ModelDeck server with one API token."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"User-Agent": f"modeldeck-cli/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    @classmethod
    def from_environment(cls, **options: Any) -> Client:
        """A client for `MODELDECK_URL` / `MODELDECK_TOKEN`, else the login `modeldeck login` saved."""
        from modeldeck.config import credentials_resolve

        credentials = credentials_resolve()
        return cls(credentials.url, credentials.token, **options)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport ---------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempts = 1 + (READ_RETRIES if method == "GET" else 0)
        for attempt in range(attempts):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TimeoutException as exc:
                failure: ModelDeckError = ConnectionFailed(
                    f"ModelDeck at {self.url} did not answer {method} {path} in time ({type(exc).__name__}).",
                    code="timeout",
                    detail={"url": self.url},
                )
            except httpx.TransportError as exc:
                failure = ConnectionFailed(
                    f"Cannot reach ModelDeck at {self.url}: {exc or type(exc).__name__}.",
                    code="connection_failed",
                    detail={"url": self.url},
                )
            else:
                if response.is_success:
                    return response
                raise error_from_response(response)
            if attempt + 1 < attempts:
                time.sleep(RETRY_PAUSE * (attempt + 1))
        raise failure

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # -- identity ----------------------------------------------------------------------------------------------

    def me(self) -> Me:
        """The user behind the token, the token itself, and the teams with their effective roles."""
        return cast(Me, self._json("GET", "/api/v1/me"))

    # -- models and versions -----------------------------------------------------------------------------------

    def list_models(self, *, team: str | None = None, search: str = "") -> list[Model]:
        params = {key: value for key, value in (("team", team), ("search", search)) if value}
        return cast(list[Model], self._json("GET", "/api/v1/models", params=params))

    def get_model(self, model: str) -> Model:
        team, name = model_reference_split(model)
        return cast(Model, self._json("GET", f"/api/v1/models/{_segment(team)}/{_segment(name)}"))

    def create_model(self, model: str, *, description: str = "") -> Model:
        team, name = model_reference_split(model)
        body = {"team": team, "name": name, "description": description}
        return cast(Model, self._json("POST", "/api/v1/models", json=body))

    def ensure_model(self, model: str, *, description: str = "") -> tuple[Model, bool]:
        """The model, registered first if it does not exist yet; True when this call registered it."""
        try:
            return self.get_model(model), False
        except NotFound:
            pass
        try:
            return self.create_model(model, description=description), True
        except Invalid as exc:
            if exc.status != 409:
                raise
            # Someone registered it between our look and our create: use theirs.
            return self.get_model(model), False

    def _model_path(self, model: str) -> str:
        team, name = model_reference_split(model)
        return f"/api/v1/models/{_segment(team)}/{_segment(name)}"

    def archive_model(self, model: str) -> Model:
        """Archive a model with its versions (hidden from lists, no new versions or endpoints); refused (`Invalid`,
        code `model_in_use`) while an endpoint serves one of its versions."""
        return cast(Model, self._json("POST", f"{self._model_path(model)}/archive"))

    def unarchive_model(self, model: str) -> Model:
        """Bring an archived model back, with the versions archived with it."""
        return cast(Model, self._json("POST", f"{self._model_path(model)}/unarchive"))

    def archive_version(self, model: str, number: int) -> Version:
        """Archive a version (never newly deployed, its files collected after the retention period); refused
        (`Invalid`, code `version_in_use`) while an endpoint's live release serves it."""
        return cast(Version, self._json("POST", f"{self._versions_path(model)}/{int(number)}/archive"))

    def unarchive_version(self, model: str, number: int) -> Version:
        """Bring an archived version back; refused (`Invalid`, code `artifacts_deleted`) once its files are gone."""
        return cast(Version, self._json("POST", f"{self._versions_path(model)}/{int(number)}/unarchive"))

    def _versions_path(self, model: str) -> str:
        team, name = model_reference_split(model)
        return f"/api/v1/models/{_segment(team)}/{_segment(name)}/versions"

    def list_versions(self, model: str) -> list[Version]:
        """The model's versions, newest first."""
        return cast(list[Version], self._json("GET", self._versions_path(model)))

    def get_version(self, model: str, number: int) -> Version:
        return cast(Version, self._json("GET", f"{self._versions_path(model)}/{int(number)}"))

    def upload_version(
        self,
        model: str,
        file: str | os.PathLike[str],
        *,
        sample: str | os.PathLike[str] | None = None,
        description: str = "",
        tags: Iterable[str] = (),
        progress: UploadProgress | None = None,
        create_model: bool = False,
    ) -> Version:
        """Upload a model file as the model's next version, streamed from disk (never read whole into memory).

        `progress(sent, total)` is called as the file's bytes are read onto the connection. With `create_model`,
        a missing model is registered together with this version (nothing is registered if the upload is refused).
        """
        path = Path(file)
        sample_path = Path(sample) if sample is not None else None
        total = path.stat().st_size + (sample_path.stat().st_size if sample_path else 0)
        sent = [0]

        def on_read(count: int) -> None:
            sent[0] += count
            if progress is not None:
                progress(min(sent[0], total), total)

        with path.open("rb") as handle, sample_path.open("rb") if sample_path else nullcontext() as sample_handle:
            files: dict[str, tuple[str, Any, str]] = {
                "file": (path.name, _CountingReader(handle, on_read), "application/octet-stream")
            }
            if sample_path is not None and sample_handle is not None:
                files["sample"] = (
                    sample_path.name,
                    _CountingReader(sample_handle, on_read),
                    "application/octet-stream",
                )
            data = {"description": description, "tags": ",".join(tags)}
            timeout = httpx.Timeout(DEFAULT_TIMEOUT, read=UPLOAD_READ_TIMEOUT)
            if progress is not None:
                progress(0, total)
            params = {"create_model": "true"} if create_model else None
            response = self._request(
                "POST", self._versions_path(model), files=files, data=data, params=params, timeout=timeout
            )
        return cast(Version, response.json())

    def wait_version(
        self,
        model: str,
        number: int,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        on_poll: VersionProgress | None = None,
    ) -> Version:
        """Wait until a `processing` version is `ready`; raise JobFailed when its processing failed."""
        deadline = time.monotonic() + timeout
        for pause in _pauses():
            version = self.get_version(model, number)
            if on_poll is not None:
                on_poll(version)
            if version["status"] == "ready":
                return version
            if version["status"] == "failed":
                raise JobFailed(
                    f"Version {number} of {model} failed: {version['status_message'] or 'no reason recorded'}",
                    code="version_failed",
                    detail={"model": model, "version": number},
                )
            _sleep_until(deadline, pause, f"version {number} of {model} to be ready", timeout)
        raise AssertionError("unreachable")

    # -- jobs --------------------------------------------------------------------------------------------------

    def _version_job(self, model: str, number: int, kind: str, body: dict[str, Any] | None) -> Job:
        return cast(Job, self._json("POST", f"{self._versions_path(model)}/{int(number)}/{kind}", json=body))

    def convert(self, model: str, number: int, *, target: str, quantization: str = "none") -> Job:
        """Queue a conversion of the version (202 with the job); the result is a new version with a parity report."""
        return self._version_job(model, number, "conversions", {"target": target, "quantization": quantization})

    def benchmark(self, model: str, number: int) -> Job:
        """Queue a benchmark of the version (202 with the job)."""
        return self._version_job(model, number, "benchmarks", None)

    def get_job(self, job_id: int) -> Job:
        return cast(Job, self._json("GET", f"/api/v1/jobs/{int(job_id)}"))

    def cancel_job(self, job_id: int) -> Job:
        return cast(Job, self._json("POST", f"/api/v1/jobs/{int(job_id)}/cancel"))

    def wait_job(
        self,
        job_id: int,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        on_progress: JobProgress | None = None,
        raise_on_failure: bool = True,
    ) -> Job:
        """Poll the job until it succeeded, failed or was cancelled; raise JobFailed for the last two."""
        deadline = time.monotonic() + timeout
        for pause in _pauses():
            job = self.get_job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["status"] in JOB_DONE_STATUSES:
                if job["status"] != "succeeded" and raise_on_failure:
                    raise job_failure(job)
                return job
            _sleep_until(deadline, pause, f"job {job_id} to finish", timeout)
        raise AssertionError("unreachable")

    # -- endpoints and releases --------------------------------------------------------------------------------

    def list_endpoints(self) -> list[Endpoint]:
        return cast(list[Endpoint], self._json("GET", "/api/v1/endpoints"))

    def get_endpoint(self, name: str) -> Endpoint:
        return cast(Endpoint, self._json("GET", f"/api/v1/endpoints/{_segment(name)}"))

    def create_endpoint(
        self,
        name: str,
        *,
        model: str,
        version: int,
        protected: bool = False,
        public: bool = False,
        reason: str = "",
    ) -> Endpoint:
        """Create an endpoint serving the version (its first release)."""
        model_reference_split(model)
        body = {
            "name": name,
            "model": model,
            "version": int(version),
            "protected": protected,
            "public": public,
            "reason": reason,
        }
        return cast(Endpoint, self._json("POST", "/api/v1/endpoints", json=body))

    def update_endpoint(self, name: str, **fields: Any) -> Endpoint:
        """Change serving settings: `public`, `protected`, `max_batch_size`, `max_queue_delay_ms`."""
        return cast(Endpoint, self._json("PATCH", f"/api/v1/endpoints/{_segment(name)}", json=fields))

    def releases(self, name: str) -> list[Release]:
        """The endpoint's release history, newest first."""
        return cast(list[Release], self._json("GET", f"/api/v1/endpoints/{_segment(name)}/releases"))

    def promote(
        self,
        name: str,
        version: int,
        *,
        canary_percent: int | None = None,
        shadow_version: int | None = None,
        allow_signature_change: bool = False,
        reason: str = "",
    ) -> Release | ChangeRequest:
        """Promote a version (or start a canary at `canary_percent`); a new release, or on an endpoint that requires
        approval a pending `ChangeRequest` (tell them apart with `is_change_request`).

        A version whose inputs or outputs differ from the primary's raises `Invalid` (code `signature_mismatch`, the
        differences in `detail["differences"]`) unless `allow_signature_change`.
        """
        body: dict[str, Any] = {"version": int(version), "reason": reason}
        if canary_percent is not None:
            body["canary_percent"] = canary_percent
        if shadow_version is not None:
            body["shadow_version"] = shadow_version
        if allow_signature_change:
            body["allow_signature_change"] = True
        return cast(
            Release | ChangeRequest, self._json("POST", f"/api/v1/endpoints/{_segment(name)}/promote", json=body)
        )

    def rollback(self, name: str, *, reason: str = "") -> Release:
        """Roll back to the previous release, as a new release."""
        return cast(
            Release, self._json("POST", f"/api/v1/endpoints/{_segment(name)}/rollback", json={"reason": reason})
        )

    def start_rollout(
        self,
        name: str,
        version: int,
        *,
        steps: list[RolloutStep],
        gates: dict[str, float | None] | None = None,
        allow_signature_change: bool = False,
        reason: str = "",
    ) -> Rollout | ChangeRequest:
        """Start a rollout: the version's canary share moves step by step while the gates hold, then it is promoted.
        On an endpoint that requires approval: a pending `ChangeRequest` holding the rollout (`is_change_request`).

        `gates` overrides thresholds by name (None turns one off). A failed pre-flight check raises `Invalid` (code
        `preflight_failed`, the checks in `detail["checks"]`); an active rollout, `Invalid` (code `rollout_active`).
        """
        body: dict[str, Any] = {"version": int(version), "steps": steps, "gates": gates or {}, "reason": reason}
        if allow_signature_change:
            body["allow_signature_change"] = True
        return cast(
            Rollout | ChangeRequest, self._json("POST", f"/api/v1/endpoints/{_segment(name)}/rollouts", json=body)
        )

    # -- approvals ---------------------------------------------------------------------------------------------

    def change_requests(self, *, team: str | None = None, state: str | None = None) -> list[ChangeRequest]:
        """Change requests of your teams (or `team`), pending first; `state` keeps only those."""
        params = {key: value for key, value in (("team", team), ("state", state)) if value}
        return cast(list[ChangeRequest], self._json("GET", "/api/v1/change-requests", params=params))

    def get_change_request(self, request_id: int) -> ChangeRequest:
        return cast(ChangeRequest, self._json("GET", f"/api/v1/change-requests/{int(request_id)}"))

    def approve(self, request_id: int, *, reason: str = "") -> ChangeRequest:
        """Approve and apply a change request (an admin other than its requester; `Invalid` code `expired` when
        its time is up). A change that no longer applies comes back with state `failed` and `result["error"]`."""
        path = f"/api/v1/change-requests/{int(request_id)}/approve"
        return cast(ChangeRequest, self._json("POST", path, json={"reason": reason}))

    def reject(self, request_id: int, *, reason: str = "") -> ChangeRequest:
        """Reject a change request with a reason, or withdraw your own."""
        path = f"/api/v1/change-requests/{int(request_id)}/reject"
        return cast(ChangeRequest, self._json("POST", path, json={"reason": reason}))

    def rollouts(self, name: str) -> list[Rollout]:
        """The endpoint's rollouts, newest first."""
        return cast(list[Rollout], self._json("GET", f"/api/v1/endpoints/{_segment(name)}/rollouts"))

    def get_rollout(self, name: str, rollout_id: int) -> Rollout:
        return cast(Rollout, self._json("GET", f"/api/v1/endpoints/{_segment(name)}/rollouts/{int(rollout_id)}"))

    def rollout_action(self, name: str, rollout_id: int, action: str, *, reason: str = "") -> Rollout:
        """`pause`, `resume`, `advance` or `abort` (with `reason`) a rollout."""
        path = f"/api/v1/endpoints/{_segment(name)}/rollouts/{int(rollout_id)}/{_segment(action)}"
        return cast(Rollout, self._json("POST", path, json={"reason": reason} if action == "abort" else {}))

    def delete_endpoint(self, name: str, *, confirm: str) -> None:
        """Delete an endpoint (it stops serving at once; the model's versions stay); `confirm` repeats its name."""
        self._request("DELETE", f"/api/v1/endpoints/{_segment(name)}", params={"confirm": confirm})

    # -- inference (Open Inference Protocol) -------------------------------------------------------------------

    def _v2_path(self, endpoint: str, version: int | None) -> str:
        path = f"/v2/models/{_segment(endpoint)}"
        return f"{path}/versions/{int(version)}" if version is not None else path

    def model_metadata(self, endpoint: str, *, version: int | None = None) -> dict[str, Any]:
        """The endpoint's OIP metadata: `name`, `versions`, `platform`, `inputs`, `outputs`."""
        return cast(dict[str, Any], self._json("GET", self._v2_path(endpoint, version)))

    def predict(self, endpoint: str, body: dict[str, Any], *, version: int | None = None) -> dict[str, Any]:
        """Run an OIP infer request (`{"inputs": [{"name", "shape", "datatype", "data"}]}`) on the endpoint."""
        return cast(dict[str, Any], self._json("POST", f"{self._v2_path(endpoint, version)}/infer", json=body))


def job_failure(job: Job) -> JobFailed:
    """The error for a job that ended failed or cancelled."""
    what = f"{job['kind']} job {job['id']} (v{job['version']} of {job['team']}/{job['model']})"
    if job["status"] == "cancelled":
        message = f"The {what} was cancelled."
    else:
        message = f"The {what} failed: {job['error'] or 'no reason recorded'}"
    return JobFailed(message, code=f"job_{job['status']}", detail={"job": job["id"], "status": job["status"]})


class _CountingReader:
    """A binary file that reports how many bytes were read from it; httpx streams it in 64 KiB chunks."""

    def __init__(self, file: IO[bytes], on_read: Callable[[int], None]) -> None:
        self._file = file
        self._on_read = on_read

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._on_read(len(chunk))
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        # Lets httpx size the multipart body, so the upload carries a Content-Length (the server checks it first).
        return self._file.fileno()


def _pauses() -> Iterable[float]:
    pause = 0.2
    while True:
        yield pause
        pause = min(pause * 1.5, 1.0)


def _sleep_until(deadline: float, pause: float, what: str, timeout: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise WaitTimeout(f"Gave up waiting for {what} after {timeout:g} s.", code="wait_timeout")
    time.sleep(min(pause, left))


def is_change_request(answer: Any) -> TypeGuard[ChangeRequest]:
    """Whether a promote's or a rollout's answer is a change request (the endpoint requires approval)."""
    return isinstance(answer, dict) and "expires_at" in answer and "decided_by" in answer
