"""`python -m modeldeck` runs the CLI."""

from __future__ import annotations

from modeldeck.cli import main

raise SystemExit(main())
