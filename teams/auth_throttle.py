"""Throttle failed logins and failed token presentations per account and per client address, in the shared cache.

Each subject (an account, or a client address) counts its failures; the count is forgotten a window after the last
failure. At the limit the subject is locked for a base time that doubles with every further failure, up to a cap;
while it is locked, attempts are refused without being checked. Lockouts and refusals are audited (a refusal once
per lock, so a flood of refused attempts is not a flood of rows). If the cache cannot be reached, nothing is
throttled: the outage is logged, and logins and tokens keep working (fail open).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
import unicodedata
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, transaction
from django.http import HttpRequest

from teams.services import security_event_record

logger = logging.getLogger(__name__)

KEY_PREFIX = "auth-throttle"


@dataclass(frozen=True)
class Subject:
    """One thing whose failures are counted: an account (by normalized username) or a client address."""

    scope: str  # "login.account", "login.address" or "token.address"
    name: str  # the username as normalized, or the address (an IPv6 address by its /64)
    limit: int

    @property
    def key(self) -> str:
        digest = hashlib.sha256(self.name.encode()).hexdigest()[:32]
        return f"{KEY_PREFIX}:{self.scope}:{digest}"


@dataclass(frozen=True)
class Lockout:
    subject: Subject
    retry_after: int  # whole seconds, at least 1
    failures: int = 0  # the count that began the lock (0: a lock found, not begun)


def username_normalize(username: str) -> str:
    """The form of a username failures are counted under: 'Alice', ' alice' and its fullwidth twin are one account."""
    return unicodedata.normalize("NFKC", username).strip().casefold()[:150]


def address_normalize(address: str) -> str:
    """The form of a client address failures are counted under: an IPv6 client holds its whole /64, so that is one."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def request_address(request: HttpRequest) -> str:
    """The client address of a Django request. REMOTE_ADDR is already the real client's: the ASGI stack applies
    X-Forwarded-For only from the proxies FORWARDED_ALLOW_IPS trusts (config/asgi.py), and nothing else is believed."""
    return address_normalize(request.META.get("REMOTE_ADDR") or "")


def login_subjects(*, username: str, address: str) -> tuple[Subject, Subject]:
    return (
        Subject("login.account", username_normalize(username), settings.MODELDECK_LOGIN_FAILURES_PER_ACCOUNT),
        Subject("login.address", address, settings.MODELDECK_LOGIN_FAILURES_PER_ADDRESS),
    )


def token_subjects(*, address: str) -> tuple[Subject]:
    return (Subject("token.address", address, settings.MODELDECK_TOKEN_FAILURES_PER_ADDRESS),)


def _lock_key(subject: Subject) -> str:
    return f"{subject.key}:lock"


def _longest(lockouts: list[Lockout]) -> Lockout | None:
    return max(lockouts, key=lambda lockout: lockout.retry_after, default=None)


def _cache_down(operation: str, exc: Exception) -> None:
    logger.warning("auth throttle: cache unreachable during %s, not throttling (%s)", operation, exc)


def throttle_check(subjects: tuple[Subject, ...]) -> Lockout | None:
    """The longest lock on any of the subjects, or None (also when the cache cannot be reached)."""
    try:
        locks = cache.get_many([_lock_key(subject) for subject in subjects])
    except Exception as exc:  # noqa: BLE001  (any cache backend error: fail open)
        _cache_down("check", exc)
        return None
    now = time.time()
    found = [
        Lockout(subject, max(1, math.ceil(float(locks[_lock_key(subject)]) - now)))
        for subject in subjects
        if _lock_key(subject) in locks
    ]
    return _longest(found)


def _failures_add(subject: Subject, window: int) -> int:
    counter = f"{subject.key}:failures"
    if cache.add(counter, 1, window):
        return 1
    try:
        count = cache.incr(counter)
    except ValueError:  # expired between add() and incr()
        cache.add(counter, 1, window)
        return 1
    cache.touch(counter, window)  # the window runs from the last failure, not the first
    return int(count)


def throttle_fail(subjects: tuple[Subject, ...], *, username: str = "", address: str = "") -> Lockout | None:
    """Count a failure against each subject; lock those at their limit and return the longest lock begun, if any."""
    window = settings.MODELDECK_AUTH_FAILURE_WINDOW_SECONDS
    started: list[Lockout] = []
    try:
        for subject in subjects:
            failures = _failures_add(subject, window)
            if failures < subject.limit:
                continue
            seconds = settings.MODELDECK_AUTH_LOCKOUT_SECONDS * 2 ** min(failures - subject.limit, 32)
            seconds = min(seconds, settings.MODELDECK_AUTH_LOCKOUT_MAX_SECONDS)
            cache.set(_lock_key(subject), time.time() + seconds, seconds)
            started.append(Lockout(subject, seconds, failures))
    except Exception as exc:  # noqa: BLE001  (any cache backend error: fail open)
        _cache_down("counting a failure", exc)
    for lockout in started:
        logger.warning(
            "auth throttle: %s %s locked for %d s after %d failures",
            lockout.subject.scope,
            lockout.subject.name,
            lockout.retry_after,
            lockout.failures,
        )
        _audit("auth.lockout", _event_data(lockout, username, address))
    return _longest(started)


def throttle_refused(lockout: Lockout, *, username: str = "", address: str = "") -> None:
    """Audit an attempt refused by a lock, once per lock: a flood of refused attempts writes one row."""
    try:
        first = cache.add(f"{_lock_key(lockout.subject)}:refusal-audited", 1, lockout.retry_after)
    except Exception as exc:  # noqa: BLE001  (any cache backend error: fail open)
        _cache_down("auditing a refusal", exc)
        return
    if first:
        _audit("auth.refused", _event_data(lockout, username, address))


def throttle_reset(subject: Subject) -> None:
    """Forget a subject's failures (an account after a successful login)."""
    try:
        cache.delete(f"{subject.key}:failures")
    except Exception as exc:  # noqa: BLE001  (any cache backend error: fail open)
        _cache_down("reset", exc)


def token_failure_record(*, address: str) -> Lockout | None:
    """Count a failed token from the address: the lock it is under (found or begun now), or None (answer 401)."""
    subjects = token_subjects(address=address)
    lockout = throttle_check(subjects)
    if lockout is not None:
        throttle_refused(lockout, address=address)
        return lockout
    return throttle_fail(subjects, address=address)


def _audit(action: str, data: dict[str, object]) -> None:
    # The refusal stands without its row: a database outage must not turn a 429 into a 500.
    try:
        with transaction.atomic():
            security_event_record(action=action, data=data)
    except DatabaseError as exc:
        logger.warning("auth throttle: could not audit %s %s (%s)", action, data, exc)


def _event_data(lockout: Lockout, username: str, address: str) -> dict[str, object]:
    data: dict[str, object] = {"scope": lockout.subject.scope, "retry_after": lockout.retry_after}
    if lockout.failures:
        data["failures"] = lockout.failures
    if username:
        data["username"] = username[:150]
    if address:
        data["address"] = address
    return data


def retry_after_text(seconds: int) -> str:
    """'45 seconds', '2 minutes', '15 minutes': how long a refused user waits, for a page."""
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"
