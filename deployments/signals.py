"""Signals of the control plane."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after a commit that changed releases or endpoint settings, in the process that made the change (serving
# processes elsewhere learn of it from the release stamp).
releases_changed = Signal()
