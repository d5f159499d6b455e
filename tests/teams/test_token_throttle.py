"""Failed API tokens are throttled per client address: 429 with Retry-After past the limit, valid tokens untouched."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from unittest import mock

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from teams.auth_throttle import address_normalize, token_subjects
from teams.models import AuditEvent
from tests.teams.test_login_throttle import UNREACHABLE_CACHE

pytestmark = pytest.mark.django_db


@pytest.fixture
def address(settings) -> Iterator[str]:
    settings.MODELDECK_TOKEN_FAILURES_PER_ADDRESS = 3
    settings.MODELDECK_AUTH_LOCKOUT_SECONDS = 30
    value = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    _forget(value)
    yield value
    _forget(value)


def _forget(address: str) -> None:
    for subject in token_subjects(address=address_normalize(address)):
        cache.delete_many([f"{subject.key}:failures", f"{subject.key}:lock", f"{subject.key}:lock:refusal-audited"])


def _me(address: str, authorization: str):
    return APIClient().get("/api/v1/me", HTTP_AUTHORIZATION=authorization, REMOTE_ADDR=address)


def test_invalid_tokens_from_one_address_get_429_after_the_limit(address) -> None:
    bad = "Bearer mdk_0000000000000000000000000000000000000000000"
    statuses = [_me(address, bad).status_code for _ in range(2)]
    # A malformed header counts too: it is the cheapest thing to hammer.
    third = _me(address, "Bearer two parts")
    assert statuses == [401, 401]
    assert third.status_code == 429
    assert third["Retry-After"] == "30"
    assert third.json() == {
        "error": {
            "code": "throttled",
            "message": "Too many invalid tokens from your address; try again in 30 seconds.",
            "detail": {"retry_after": 30},
        }
    }
    for _ in range(3):
        assert _me(address, bad).status_code == 429
    events = AuditEvent.objects.filter(team=None).order_by("id")
    assert [e.action for e in events] == ["auth.lockout", "auth.refused"]
    assert events[0].data == {"scope": "token.address", "retry_after": 30, "failures": 3, "address": address}
    # Other addresses are not affected.
    assert _me(f"198.18.{uuid.uuid4().int % 250}.1", bad).status_code == 401


def test_a_valid_token_never_touches_the_throttle(address, make_member) -> None:
    member = make_member()
    for _ in range(3):
        _me(address, "Bearer mdk_not-a-real-token-at-all-000000000000000")
    assert _me(address, "Bearer mdk_not-a-real-token-at-all-000000000000000").status_code == 429
    # The address is locked for bad tokens, yet a valid one is answered, without a single cache call.
    with mock.patch("teams.auth_throttle.cache", new=mock.NonCallableMock(spec=[])):
        answer = _me(address, f"Bearer {member.token}")
    assert answer.status_code == 200
    assert answer.json()["username"] == member.user.username


def test_with_the_cache_unreachable_bad_tokens_get_401_not_429_or_500(address) -> None:
    with override_settings(CACHES=UNREACHABLE_CACHE):
        statuses = [
            _me(address, "Bearer mdk_0000000000000000000000000000000000000000000").status_code for _ in range(5)
        ]
    assert statuses == [401] * 5
    assert not AuditEvent.objects.filter(team=None).exists()
