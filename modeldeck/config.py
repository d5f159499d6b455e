"""Where the CLI finds its server and token: the environment first, then the file `modeldeck login` wrote."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from modeldeck.errors import LOGIN_HINT, Invalid, NotAuthenticated

ENV_URL = "MODELDECK_URL"
ENV_TOKEN = "MODELDECK_TOKEN"  # noqa: S105 (the variable's name, not a secret)
ENV_CONFIG = "MODELDECK_CONFIG"


def config_path() -> Path:
    """`$MODELDECK_CONFIG`, else `$XDG_CONFIG_HOME/modeldeck/config.json` (`~/.config/modeldeck/config.json`)."""
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "modeldeck" / "config.json"


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str


def config_read(path: Path | None = None) -> dict[str, str]:
    """The saved login, or an empty dict when there is none."""
    path = path or config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise Invalid(f"Cannot read the ModelDeck config at {path}: {exc}", code="bad_config") from exc
    if not isinstance(data, dict):
        raise Invalid(f"The ModelDeck config at {path} is not a JSON object.", code="bad_config")
    return {key: str(value) for key, value in data.items() if isinstance(value, str)}


def config_write(*, url: str, token: str, path: Path | None = None) -> Path:
    """Save the login readable by its owner only (0600), replacing the file atomically."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Created 0600 from the start: the token is never readable by others, not even for an instant.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            json.dump({"url": url, "token": token}, file, indent=2)
            file.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def credentials_resolve() -> Credentials:
    """The URL and token to use: `MODELDECK_URL` / `MODELDECK_TOKEN` override the saved login, one by one."""
    saved = config_read()
    url = os.environ.get(ENV_URL, "").strip() or saved.get("url", "")
    token = os.environ.get(ENV_TOKEN, "").strip() or saved.get("token", "")
    if not url or not token:
        missing = " and ".join(name for name, value in (("a URL", url), ("a token", token)) if not value)
        raise NotAuthenticated(f"No ModelDeck login: {missing} missing. {LOGIN_HINT}", code="not_logged_in")
    return Credentials(url=url_normalize(url), token=token)


def url_normalize(url: str) -> str:
    """`host:8000` -> `http://host:8000`; no trailing slash."""
    url = url.strip()
    if "://" not in url:
        url = f"http://{url}"
    return url.rstrip("/")
