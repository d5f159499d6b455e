"""Tell the team's live stream about a version.

Uploads (versions), conversions and archiving all announce their writes with it, so it sits below all three.
"""

from __future__ import annotations

import logging
from typing import Any

from common.events import team_event_publish
from registry.models import ModelVersion

logger = logging.getLogger(__name__)


def version_event_data(version: ModelVersion) -> dict[str, Any]:
    return {
        "model": version.model.name,
        "number": version.number,
        "status": version.status,
        "format": version.format,
        "parent": version.parent.number if version.parent is not None else None,
        "archived": version.archived_at is not None,
    }


def version_publish(version: ModelVersion) -> None:
    """Tell the team's live stream that a version appeared or changed status (pages listening refresh); a missing
    channel layer never fails the write it announces."""
    try:
        team_event_publish(team=version.model.team.slug, kind="version", data=version_event_data(version))
    except Exception:
        logger.warning("Could not publish version %s to the team stream", version.pk, exc_info=True)
