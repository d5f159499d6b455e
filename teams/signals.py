"""Signals of teams' writes, so higher layers can react to them without teams importing those layers."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after the commit that removed a user from a team or changed their role there; arguments: team (the slug)
# and user_id. monitoring closes that user's sockets the change shut out.
membership_changed = Signal()
