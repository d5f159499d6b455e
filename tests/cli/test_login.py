"""`modeldeck login`: the token is checked, then saved for its owner only; the environment still overrides it."""

from __future__ import annotations

import json
import stat

import pytest

from tests.cli.conftest import Cli

pytestmark = pytest.mark.django_db(transaction=True)


def test_login_saves_a_0600_file_that_later_commands_use(cli: Cli, live_url: str) -> None:
    run = cli("login", live_url, "--token", cli.token, "--json", MODELDECK_URL=None, MODELDECK_TOKEN=None)
    assert run.code == 0, run.stderr
    assert run.json == {
        "url": live_url,
        "username": "dev",
        "teams": [{"slug": "alpha", "name": run.json["teams"][0]["name"], "role": "developer"}],
        "config": str(cli.config),
    }
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o600
    assert json.loads(cli.config.read_text()) == {"url": live_url, "token": cli.token}

    # Later commands need nothing but the file...
    listed = cli("versions", "alpha/none", MODELDECK_URL=None, MODELDECK_TOKEN=None)
    assert listed.code == 3, listed.stderr  # it reached the server with the saved token: the model is just not there
    # ...and the environment wins over it, one value at a time.
    wrong = cli("versions", "alpha/none", MODELDECK_URL=None, MODELDECK_TOKEN="mdk_wrong")
    assert wrong.code == 4


def test_login_with_a_wrong_token_saves_nothing(cli: Cli, live_url: str) -> None:
    run = cli("login", live_url, "--token", "mdk_wrong", MODELDECK_URL=None, MODELDECK_TOKEN=None)
    assert run.code == 4
    assert run.stderr.startswith(f"error: ModelDeck at {live_url} refused the token: ")
    assert not cli.config.exists()
    human = cli("login", live_url.removeprefix("http://"), MODELDECK_URL=None)  # the token from MODELDECK_TOKEN
    assert human.code == 0, human.stderr
    assert f"Logged in to {live_url} as dev" in human.stdout


def test_a_throttled_login_exits_4_and_says_how_long_to_wait(cli: Cli, live_url: str, settings) -> None:
    from django.core.cache import cache

    from teams.auth_throttle import token_subjects

    settings.MODELDECK_TOKEN_FAILURES_PER_ADDRESS = 2
    keys = [f"{s.key}:{part}" for s in token_subjects(address="127.0.0.1") for part in ("failures", "lock")]
    cache.delete_many(keys)
    try:
        runs = [cli("login", live_url, "--token", "mdk_wrong", MODELDECK_URL=None) for _ in range(3)]
        # A valid token is never throttled: the lock is on failing, not on the address.
        valid = cli("login", live_url, "--token", cli.token, MODELDECK_URL=None, MODELDECK_TOKEN=None)
    finally:
        cache.delete_many([*keys, f"{keys[1]}:refusal-audited"])
    assert [run.code for run in runs] == [4, 4, 4]
    assert "Too many invalid tokens" not in runs[0].stderr
    assert "Too many invalid tokens from your address; try again in 60 seconds." in runs[1].stderr
    assert "Too many invalid tokens from your address; try again in" in runs[2].stderr
    assert valid.code == 0, valid.stderr
