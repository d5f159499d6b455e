"""A conversion a command asked for (`push --convert`, `convert`): its job, the version it made, and waiting on it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modeldeck.client import job_failure
from modeldeck.commands.context import Context
from modeldeck.errors import JobFailed, ModelDeckError, ParityFailed
from modeldeck.progress import job_label
from modeldeck.resources import Job, Version


@dataclass
class Conversion:
    target: str
    quantization: str
    job: Job | None = None
    version: Version | None = None
    note: str = ""

    @property
    def parity_passed(self) -> bool | None:
        if self.version is None or not self.version.get("parity"):
            return None
        return bool(self.version["parity"].get("passed")) or self.version.get("parity_override") is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "quantization": self.quantization,
            "job": self.job,
            "version": self.version,
            "parity_passed": self.parity_passed,
            "note": self.note,
        }


def conversion_wait(ctx: Context, model: str, conversion: Conversion) -> ModelDeckError | None:
    """Wait for a conversion's job, fetch the version it made, and return the error it ends with (if any)."""
    assert conversion.job is not None
    timeout = ctx.args.timeout
    with ctx.output.progress.job(job_label(conversion.job)) as on_progress:
        job = ctx.client.wait_job(
            conversion.job["id"], timeout=timeout, on_progress=on_progress, raise_on_failure=False
        )
    conversion.job = job
    if job["status"] != "succeeded":
        return job_failure(job)
    if job["result_version"] is not None:
        conversion.version = ctx.client.get_version(model, job["result_version"])
    if conversion.parity_passed is False:
        assert conversion.version is not None
        parity = conversion.version["parity"]
        return ParityFailed(
            f"Parity failed for v{conversion.version['number']} of {model} ({conversion.target}:"
            f"{conversion.quantization}, from v{job['version']}): {parity.get('reason', 'no reason recorded')}",
            code="parity_failed",
            detail={"version": conversion.version["number"], "parity": parity},
        )
    return None


def first_error(errors: Sequence[ModelDeckError | None]) -> ModelDeckError | None:
    """A failed job (7) outranks a failed parity report (6): the former says less was even checked."""
    found = [error for error in errors if error is not None]
    for error in found:
        if isinstance(error, JobFailed):
            return error
    return found[0] if found else None
