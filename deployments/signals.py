"""Signals of the control plane, and its answers to the registry's."""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal, receiver

from deployments.selectors import release_live_list
from registry.models import ModelVersion
from registry.signals import versions_in_use

# Sent after a commit that changed releases or endpoint settings, in the process that made the change (serving
# processes elsewhere learn of it from the release stamp).
releases_changed = Signal()


@receiver(versions_in_use)
def _versions_in_use(sender: Any, versions: list[int], purpose: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Tell the registry which endpoints use these versions: live in their release (primary, canary, shadow) and,
    when it is about to collect files, as what a rollback could bring back. Connected in DeploymentsConfig.ready."""
    wanted = set(versions)
    uses: list[dict[str, Any]] = []
    # Every endpoint is bound to one model and serves only its versions: only those models' endpoints can use them.
    models = ModelVersion.objects.filter(pk__in=wanted).values("model_id")
    for release in release_live_list().filter(endpoint__model_id__in=models).order_by("endpoint__name"):
        name = release.endpoint.name
        for role, version_id in (
            ("primary", release.primary_id),
            ("canary", release.canary_id),
            ("shadow", release.shadow_id),
        ):
            if version_id in wanted:
                uses.append({"version": version_id, "endpoint": name, "role": role})
        if purpose == "collect":
            # The primary a rollback brings back (with a canary live, a second one): the newest earlier release
            # whose primary differs from the live one (deployments.selectors.release_rollback_plan).
            back = (
                release.endpoint.releases.filter(number__lt=release.number)
                .exclude(primary_id=release.primary_id)
                .order_by("-number")
                .values_list("primary_id", flat=True)
                .first()
            )
            if back in wanted:
                uses.append({"version": back, "endpoint": name, "role": "rollback"})
    return uses
