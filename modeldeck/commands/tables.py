"""How the commands show the API's resources to people: rich tables and one-line summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from modeldeck.resources import Endpoint, Release, Version

if TYPE_CHECKING:
    from modeldeck.commands.conversions import Conversion


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parity_cell(version: Version) -> str:
    parity = version.get("parity") or {}
    if not parity:
        return "—"
    if parity.get("passed"):
        return "[green]passed[/]"
    return "[yellow]accepted[/]" if version.get("parity_override") else "[red]FAILED[/]"


def _lineage(version: Version) -> str:
    recipe = version.get("recipe") or {}
    if version.get("parent") is None:
        return "uploaded"
    return f"v{version['parent']} → {recipe.get('target')}:{recipe.get('quantization')}"


def _p50(version: Version) -> str:
    batches = (version.get("benchmark") or {}).get("batches") or []
    return f"{batches[0]['p50_ms']}" if batches else "—"


def _size(count: int) -> str:
    return f"{count / 2**20:.2f} MiB" if count >= 2**20 else f"{count / 1024:.1f} KiB"


def versions_table(model: str, versions: list[Version]) -> Table:
    table = Table(title=model)
    for column in ("version", "format", "status", "lineage", "parity", "size", "p50 ms (batch 1)", "by", "created"):
        table.add_column(column)
    for version in versions:
        table.add_row(
            f"v{version['number']}",
            version["format"],
            version["status"],
            _lineage(version),
            _parity_cell(version),
            _size(version["size"]),
            _p50(version),
            version.get("created_by") or "ModelDeck",
            version["created_at"][:19].replace("T", " "),
        )
    return table


def version_summary(version: Version) -> str:
    line = f"v{version['number']} of [bold]{version['model']}[/]: {version['format']}, {version['status']}"
    if version.get("status_message"):
        line += f" ({version['status_message']})"
    return line + f", {_size(version['size'])}, sha256 {version['sha256'][:12]}…"


def conversions_table(conversions: list[Conversion]) -> Table:
    table = Table(title="conversions")
    for column in ("recipe", "job", "status", "version", "parity", "reason"):
        table.add_column(column)
    for conversion in conversions:
        job, version = conversion.job, conversion.version
        reason = conversion.note
        if not reason and version is not None:
            reason = (version.get("parity") or {}).get("reason", "")
        if job is not None and job["status"] in ("failed", "cancelled"):
            reason = job["error"] or job["status"]
        table.add_row(
            f"{conversion.target}:{conversion.quantization}",
            str(job["id"]) if job else "—",
            job["status"] if job else "—",
            f"v{version['number']}" if version else "—",
            _parity_cell(version) if version else "—",
            clip(reason or "", 120),
        )
    return table


def benchmark_table(version: Version) -> Table:
    benchmark = version["benchmark"]
    table = Table()
    for column in ("batch", "p50 ms", "p95 ms", "p99 ms", "rows/s"):
        table.add_column(column, justify="right")
    for batch in benchmark.get("batches", []):
        table.add_row(
            str(batch["batch_size"]),
            str(batch["p50_ms"]),
            str(batch["p95_ms"]),
            str(batch["p99_ms"]),
            str(batch.get("throughput_rows_per_s", "")),
        )
    return table


def serving_text(release: Release) -> str:
    """`v2 primary, v3 canary 10%, v1 shadow`."""
    parts = [f"v{release['primary']} primary"]
    if release.get("canary") is not None:
        parts.append(f"v{release['canary']} canary {release['canary_percent']}%")
    if release.get("shadow") is not None:
        parts.append(f"v{release['shadow']} shadow")
    return ", ".join(parts)


def endpoint_table(endpoint: Endpoint) -> Table:
    table = Table(title=f"endpoint {endpoint['name']}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    release = endpoint["release"]
    flags = [name for name in ("protected", "public") if dict(endpoint).get(name)]
    table.add_row("model", endpoint["model"])
    table.add_row("serving", serving_text(release))
    table.add_row(
        "release",
        f"{release['number']} ({release['action']}) by {release.get('by') or release.get('actor') or 'ModelDeck'}",
    )
    table.add_row("flags", ", ".join(flags) or "—")
    return table


def releases_table(releases: list[Release]) -> Table:
    table = Table(title="releases (newest first)")
    for column in ("release", "action", "serving", "by", "reason", "at"):
        table.add_column(column)
    for release in releases:
        table.add_row(
            str(release["number"]),
            release["action"],
            serving_text(release),
            release.get("by") or release.get("actor") or "ModelDeck",
            clip(release.get("reason") or "", 80),
            release["created_at"][:19].replace("T", " "),
        )
    return table
