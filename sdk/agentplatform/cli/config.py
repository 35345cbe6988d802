"""Where `agentplatform login` keeps the API's URL and your key: the user's config
directory (XDG: `$XDG_CONFIG_HOME/agentplatform/config.json`, else
`~/.config/agentplatform/config.json`), readable by you only."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Profile:
    url: str | None = None
    api_key: str | None = None
    user: str | None = None


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "agentplatform" / "config.json"


def load() -> Profile:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return Profile()
    if not isinstance(data, dict):
        return Profile()
    return Profile(**{k: data.get(k) for k in ("url", "api_key", "user")})


def save(profile: Profile) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created 0600 before the key is written: it is a credential.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({k: v for k, v in asdict(profile).items() if v}, f, indent=2)
    os.chmod(path, 0o600)
    return path
