"""Progress on stderr: rich bars on a terminal, plain log lines (no escape codes) anywhere else, e.g. in CI logs."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from modeldeck.resources import Job, Version

# A plain log line for an upload at every this many percent; a job's line whenever its progress or message moves.
UPLOAD_LINE_STEP = 10


def job_label(job: Job) -> str:
    """`convert job 7 (v1 -> onnx:int8)` / `benchmark job 8 (v2)`."""
    params = job.get("params") or {}
    if job["kind"] == "convert" and params:
        return f"convert job {job['id']} (v{job['version']} -> {params.get('target')}:{params.get('quantization')})"
    return f"{job['kind']} job {job['id']} (v{job['version']})"


def job_message(job: Job) -> str:
    log = job.get("log") or []
    return log[-1]["message"] if log else ""


class Reporter:
    """Shows uploads and waits as they happen, live on a terminal and as log lines otherwise."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.console = Console(file=self.stream, stderr=stream is None)
        self.live = self.console.is_terminal if live is None else live

    def line(self, message: str) -> None:
        """One plain line (never wrapped, never colored)."""
        self.stream.write(message + "\n")
        self.stream.flush()

    def _bar(self, *, transfer: bool) -> Progress:
        columns = [SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn()]
        if transfer:
            columns += [DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
        else:
            columns += [TaskProgressColumn(), TimeElapsedColumn(), TextColumn("{task.fields[message]}")]
        return Progress(*columns, console=self.console, transient=False)

    @contextmanager
    def upload(self, description: str) -> Iterator[Callable[[int, int], None]]:
        """A callback for `Client.upload_version(progress=...)`."""
        if self.live:
            with self._bar(transfer=True) as bar:
                task = bar.add_task(description, total=None)

                def update_live(sent: int, total: int) -> None:
                    bar.update(task, completed=sent, total=total)

                yield update_live
            return
        last_step = [-1]
        started = time.monotonic()

        def update_plain(sent: int, total: int) -> None:
            percent = 100 if total == 0 else sent * 100 // total
            step = percent // UPLOAD_LINE_STEP
            if step != last_step[0]:
                last_step[0] = step
                self.line(f"{description}: {percent}% ({_size(sent)} of {_size(total)})")

        yield update_plain
        self.line(f"{description}: sent in {time.monotonic() - started:.1f} s")

    @contextmanager
    def job(self, description: str) -> Iterator[Callable[[Job], None]]:
        """A callback for `Client.wait_job(on_progress=...)`."""
        if self.live:
            with self._bar(transfer=False) as bar:
                task = bar.add_task(description, total=100, message="")

                def update_live(job: Job) -> None:
                    message = job_message(job)
                    if message in ("", job["status"]):
                        shown = job["status"]
                    else:
                        # Clipped: a long message (a parity verdict) would squeeze the bar off the line.
                        shown = f"{job['status']}: {message if len(message) <= 60 else message[:59] + '…'}"
                    bar.update(task, completed=job["progress"], message=shown)

                yield update_live
            return
        last: list[tuple[str, int, str]] = []

        def update_plain(job: Job) -> None:
            message = job_message(job)
            state = (job["status"], job["progress"], message)
            if not last or last[-1] != state:
                last.append(state)
                said = "" if message == job["status"] else message
                self.line(f"{description}: {job['status']} {job['progress']}% {said}".rstrip())

        yield update_plain

    @contextmanager
    def version(self, description: str) -> Iterator[Callable[[Version], None]]:
        """A callback for `Client.wait_version(on_poll=...)`."""
        if self.live:
            with self.console.status(description) as status:

                def update_live(version: Version) -> None:
                    status.update(f"{description}: {version['status']}")

                yield update_live
            return
        seen: set[str] = set()

        def update_plain(version: Version) -> None:
            if version["status"] not in seen:
                seen.add(version["status"])
                self.line(f"{description}: {version['status']}")

        yield update_plain


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"
