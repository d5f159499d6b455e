from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.utils import timezone

from teams.auth_throttle import (
    Lockout,
    login_subjects,
    request_address,
    retry_after_text,
    throttle_check,
    throttle_fail,
    throttle_refused,
    throttle_reset,
)
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


class ThrottledLoginMixin:
    """Check a login against the failure throttle before the password, and count its failure after.

    While the account or the client address is locked, the password is not checked at all (a right one would
    otherwise tell the guesser it is right); `lockout` says for how long, for the view's 429 and Retry-After.
    """

    lockout: Lockout | None = None
    request: Any
    cleaned_data: dict[str, Any]

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if not username or not password:
            return super().clean()  # type: ignore[misc]  # a missing field: nothing is authenticated
        address = request_address(self.request) if self.request is not None else "unknown"
        subjects = login_subjects(username=username, address=address)
        lockout = throttle_check(subjects)
        if lockout is not None:
            throttle_refused(lockout, username=username, address=address)
            raise self._locked(lockout)
        try:
            cleaned: dict[str, Any] = super().clean()  # type: ignore[misc]
        except ValidationError as exc:
            lockout = throttle_fail(subjects, username=username, address=address)
            if lockout is not None:
                raise ValidationError([*exc.error_list, *self._locked(lockout).error_list]) from exc
            raise
        throttle_reset(subjects[0])
        return cleaned

    def _locked(self, lockout: Lockout) -> ValidationError:
        self.lockout = lockout
        what = "this account" if lockout.subject.scope == "login.account" else "your network address"
        return ValidationError(
            f"Too many failed log-in attempts for {what}. Try again in {retry_after_text(lockout.retry_after)}.",
            code="throttled",
        )


class ThrottledAuthenticationForm(ThrottledLoginMixin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass
