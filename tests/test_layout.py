"""Guards on the shape of the house."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def top_level_packages() -> list[str]:
    names = [p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    names += [p.stem for p in ROOT.glob("*.py")]
    return sorted(names)


def test_finds_the_project_packages() -> None:
    assert {"config", "common", "teams", "registry", "deployments", "serving", "monitoring"} <= set(
        top_level_packages()
    )


def test_no_top_level_package_shadows_the_standard_library() -> None:
    clashes = sorted(set(top_level_packages()) & set(sys.stdlib_module_names))
    assert clashes == [], f"these names shadow stdlib modules: {clashes}"


def test_docker_folder_is_not_a_package() -> None:
    # docker/__init__.py would shadow the Docker SDK.
    assert not (ROOT / "docker" / "__init__.py").exists()
