"""The CLI's one output sink: a result as tables or one JSON document on stdout, progress and errors on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from modeldeck.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    SIGNATURE_CHANGE_HINT,
    ModelDeckError,
    error_hint,
    unexpected_message,
    unexpected_to_dict,
)
from modeldeck.progress import Reporter

Render = Callable[[Console], None]


@dataclass
class Result:
    """What a command produced: the `--json` document, how to show it to people, and an error to end with."""

    document: dict[str, Any]
    render: Render
    error: ModelDeckError | None = None


class Output:
    """Show everything a command has to say, so that with `--json` stdout holds exactly one JSON document.

    Each method that ends a run returns the exit code the run ends with.
    """

    def __init__(self, *, json_output: bool, progress: Reporter | None = None) -> None:
        self.json_output = json_output
        self.progress = progress or Reporter()

    def line(self, message: str) -> None:
        """One plain line on stderr (progress, a note, an error's explanation)."""
        self.progress.line(message)

    def result(self, result: Result) -> int:
        if self.json_output:
            document = dict(result.document)
            if result.error is not None:
                document["error"] = result.error.to_dict()
            self._json(document)
        else:
            result.render(_stdout_console())
        if result.error is not None:
            self._explain(result.error)
            return result.error.exit_code
        return EXIT_OK

    def error(self, error: ModelDeckError) -> int:
        if self.json_output:
            self._json({"error": error.to_dict()})
        self._explain(error)
        return error.exit_code

    def unexpected(self, error: Exception) -> int:
        if self.json_output:
            self._json({"error": unexpected_to_dict(error)})
        self.line(f"error: {unexpected_message(error)} (set MODELDECK_DEBUG=1 for the traceback)")
        return EXIT_ERROR

    def interrupted(self) -> int:
        self.line("interrupted")
        return EXIT_INTERRUPTED

    def _json(self, document: Any) -> None:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        sys.stdout.flush()

    def _explain(self, error: ModelDeckError) -> None:
        if error.code == "signature_mismatch" and isinstance(error.detail.get("differences"), list):
            self._explain_signature(error)
            return
        self.line(f"error: {error.message}")
        for name, problems in error.detail.items():
            if isinstance(problems, list) and problems and all(isinstance(p, str) for p in problems):
                self.line(f"  {name}: {' '.join(problems)}")
        hint = error_hint(error)
        if hint:
            self.line(f"hint: {hint}")

    def _explain_signature(self, error: ModelDeckError) -> None:
        differences = [d for d in error.detail.get("differences", []) if isinstance(d, dict)]
        primary = error.detail.get("primary")
        count = f"{len(differences)} difference{'' if len(differences) == 1 else 's'}"
        self.line(f"error: the signature differs from the primary v{primary}'s ({count}):")
        for d in differences:
            who = f"v{d.get('candidate')}" + (" (shadow)" if d.get("role") == "shadow" else "")
            self.line(
                f"  {who} {d.get('tensor')} {d.get('name')!r}: {d.get('problem')}"
                f" (primary: {_side(d.get('primary'))}; v{d.get('candidate')}: {_side(d.get('version'))})"
            )
        self.line(f"hint: {SIGNATURE_CHANGE_HINT}")


def _side(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value.get('datatype')} {value.get('shape')}"
    return "—" if value is None else str(value)


def _stdout_console() -> Console:
    # Off a terminal (a pipe, a CI log) rich would wrap tables at 80 columns: give them room instead.
    return Console() if sys.stdout.isatty() else Console(width=200)
