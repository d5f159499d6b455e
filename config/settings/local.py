"""Settings for `make run` on one machine: embedded defaults, a generated secret key kept under var/."""

from __future__ import annotations

from config.env import env, local_secret_key
from config.settings.base import *  # noqa: F403
from config.settings.base import SECRET_KEY

SECRET_KEY = SECRET_KEY or local_secret_key()
DEBUG = env.bool("DEBUG", default=False)
