"""Moved to registry/load_check.py (below the services and the conversion steps, which both run it).

serving/router.py still imports `load_error_text` from here; this alias goes once it imports registry.load_check.
"""

from __future__ import annotations

from registry.load_check import load_error_text

__all__ = ["load_error_text"]
