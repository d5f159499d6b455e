"""Login throttling: per account and per client address, with backoff, refused unchecked, audited, failing open."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.test import Client, override_settings

from teams.auth_throttle import address_normalize, login_subjects, username_normalize
from teams.models import AuditEvent
from tests.teams.factories import PASSWORD, create_user

pytestmark = pytest.mark.django_db

# Nothing listens on port 1: every cache call is refused at once, as when Redis is down.
UNREACHABLE_CACHE = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
}


@pytest.fixture
def limits(settings) -> None:
    settings.MODELDECK_LOGIN_FAILURES_PER_ACCOUNT = 3
    settings.MODELDECK_LOGIN_FAILURES_PER_ADDRESS = 5
    settings.MODELDECK_AUTH_LOCKOUT_SECONDS = 60
    settings.MODELDECK_AUTH_LOCKOUT_MAX_SECONDS = 900


@pytest.fixture
def address() -> Iterator[str]:
    """A client address of this test alone (an IPv6 /64 drawn at random), its throttle state removed after."""
    value = f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::7"
    yield value
    _forget(username="", address=value)


@pytest.fixture
def user():
    user = create_user(username=f"u{uuid.uuid4().hex[:12]}")
    yield user
    _forget(username=user.username, address="")


def _forget(*, username: str, address: str) -> None:
    for subject in login_subjects(username=username, address=address_normalize(address)):
        cache.delete_many([f"{subject.key}:failures", f"{subject.key}:lock", f"{subject.key}:lock:refusal-audited"])


def _login(client: Client, address: str, username: str, password: str):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def _unlock(username: str = "", address: str = "") -> None:
    """Let a lock run out now, as time would: the failure count stays."""
    for subject in login_subjects(username=username, address=address_normalize(address) if address else ""):
        cache.delete(f"{subject.key}:lock")


def test_wrong_passwords_lock_the_account_and_the_right_one_is_then_not_checked(limits, user, address) -> None:
    client = Client()
    assert _login(client, address, user.username, "wrong-1").status_code == 200
    assert _login(client, address, user.username, "wrong-2").status_code == 200
    third = _login(client, address, user.username, "wrong-3")
    assert third.status_code == 429
    assert third["Retry-After"] == "60"
    assert "Too many failed log-in attempts for this account. Try again in 60 seconds." in third.content.decode()

    refused = [_login(client, address, user.username, PASSWORD) for _ in range(3)]
    assert [r.status_code for r in refused] == [429, 429, 429]
    assert all(1 <= int(r["Retry-After"]) <= 60 for r in refused)
    assert "_auth_user_id" not in client.session  # the right password did not log in: it was not even checked

    events = AuditEvent.objects.filter(team=None).order_by("id")
    assert [e.action for e in events] == ["auth.lockout", "auth.refused"]  # three refusals, one row
    assert events[0].data == {
        "scope": "login.account",
        "retry_after": 60,
        "failures": 3,
        "username": user.username,
        "address": address_normalize(address),
    }
    assert events[0].actor is None

    # Each failure after the lock runs out doubles the next one.
    _unlock(username=user.username)
    again = _login(client, address, user.username, "wrong-4")
    assert (again.status_code, again["Retry-After"]) == (429, "120")
    _unlock(username=user.username)
    assert _login(client, address, user.username, "wrong-5")["Retry-After"] == "240"


def test_a_success_resets_the_account_count(limits, user, address) -> None:
    client = Client()
    for attempt in range(2):
        assert _login(client, address, user.username, f"wrong-{attempt}").status_code == 200
    assert _login(client, address, user.username, PASSWORD).status_code == 302
    client.logout()
    for attempt in range(2):
        assert _login(client, address, user.username, f"wrong-again-{attempt}").status_code == 200
    assert _login(client, address, user.username, PASSWORD).status_code == 302
    assert not AuditEvent.objects.filter(action="auth.lockout").exists()


def test_spellings_of_one_username_count_as_one_account(limits, user, address) -> None:
    client = Client()
    spellings = [user.username.upper(), f" {user.username}", user.username]
    assert username_normalize(spellings[0]) == username_normalize(spellings[1]) == user.username
    statuses = [_login(client, address, name, "wrong").status_code for name in spellings]
    assert statuses == [200, 200, 429]


def test_the_address_limit_covers_every_username_and_spares_other_addresses(limits, address) -> None:
    other_address = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    victim = create_user(username=f"v{uuid.uuid4().hex[:12]}")
    client = Client()
    try:
        statuses = [_login(client, address, f"guess{n}-{uuid.uuid4().hex[:6]}", "pw").status_code for n in range(5)]
        assert statuses == [200, 200, 200, 200, 429]
        # Another account, right password, same address (another host in the same IPv6 /64): refused unchecked.
        same_network = address.replace("::7", "::8")
        refused = _login(client, same_network, victim.username, PASSWORD)
        assert refused.status_code == 429
        assert "for your network address" in refused.content.decode()
        # The same account from elsewhere is fine: the address was locked, not the victim.
        assert _login(Client(), other_address, victim.username, PASSWORD).status_code == 302
        lockout = AuditEvent.objects.get(action="auth.lockout")
        assert lockout.data["scope"] == "login.address"
        assert lockout.data["address"] == address_normalize(address)
    finally:
        _forget(username=victim.username, address=other_address)


def test_the_admin_login_is_throttled_too(limits, user, address) -> None:
    user.is_staff = True
    user.save()
    client = Client()
    for attempt in range(3):
        client.post("/admin/login/", {"username": user.username, "password": f"x{attempt}"}, REMOTE_ADDR=address)
    answer = client.post("/admin/login/", {"username": user.username, "password": PASSWORD}, REMOTE_ADDR=address)
    assert "Too many failed log-in attempts for this account" in answer.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_missing_field_is_a_form_error_not_a_failure(limits, user, address) -> None:
    client = Client()
    for _ in range(5):
        answer = client.post("/accounts/login/", {"username": user.username}, REMOTE_ADDR=address)
        assert answer.status_code == 200
    assert _login(client, address, user.username, PASSWORD).status_code == 302


def test_with_the_cache_unreachable_logins_fail_open(limits, user, address, caplog) -> None:
    client = Client()
    with override_settings(CACHES=UNREACHABLE_CACHE):
        statuses = [_login(client, address, user.username, f"wrong-{n}").status_code for n in range(5)]
        assert statuses == [200] * 5  # not throttled, and no 500
        assert _login(client, address, user.username, PASSWORD).status_code == 302
    assert "auth throttle: cache unreachable" in caplog.text
    assert not AuditEvent.objects.filter(team=None).exists()
