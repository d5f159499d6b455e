from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from teams.choices import ROLE_RANK, Role

EXPIRY_CHOICES = [("", "Never"), ("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("365", "1 year")]


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. 'ci-pipeline'.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)
    expires_in = forms.ChoiceField(choices=EXPIRY_CHOICES, required=False, label="Expires")

    def __init__(self, *args: Any, max_role: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Offer only roles up to the user's own; the service enforces the same cap.
        role_field = self.fields["role"]
        assert isinstance(role_field, forms.ChoiceField)
        role_field.choices = [c for c in Role.choices if ROLE_RANK[c[0]] <= ROLE_RANK[max_role]]

    def expires_at(self) -> datetime | None:
        days = self.cleaned_data.get("expires_in")
        return timezone.now() + timedelta(days=int(days)) if days else None
