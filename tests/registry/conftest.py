from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_artifacts(artifact_dir: Path) -> Path:
    """Give every registry test its own artifact storage folder."""
    return artifact_dir


def stored_files(location: Path) -> list[Path]:
    return sorted(p for p in location.rglob("*") if p.is_file()) if location.exists() else []
