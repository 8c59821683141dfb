"""A visitor's workspace: an unguessable key in the page address, and a folder on the server.

The key (``?k=...``, 192 random bits) is the visitor's only credential: whoever has the address
sees that workspace's runs, models and settings, and nobody can find it without the address. A
reload or a new tab with the same address finds the same workspace; a new address (or none) is a
new, empty one. On disk a workspace is a folder named by a hash of the key (so a directory
listing gives away no key)::

    <data>/visitors/<sha256(key)[:32]>/
        settings.json     the pages' settings (corpus, model settings, generation settings)
        runs/<run id>/    the visitor's training runs (see lstm_core/runs/folder.py)
        uploads/<digest>.txt, models/<digest>.pt   what the visitor uploaded

Nothing here imports Streamlit: :mod:`app.state` reads and writes the address.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lstm_core.files import atomic_write_text
from lstm_core.text.corpus import default_cache_dir

KEY_PARAM = "k"
_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
SETTINGS_FILE = "settings.json"


def data_root() -> Path:
    """Where the server keeps everything: ``$LSTM_PLAYHOUSE_DATA``, else the user's cache folder."""
    return default_cache_dir()


def new_key() -> str:
    """A fresh workspace key: 24 random bytes, URL-safe (32 characters, 192 bits)."""
    return secrets.token_urlsafe(24)


def valid_key(value: object) -> bool:
    return isinstance(value, str) and bool(_KEY_PATTERN.match(value))


@dataclass(frozen=True)
class Workspace:
    """One visitor's key and folder."""

    key: str
    root: Path

    @classmethod
    def for_key(cls, key: str, root: Path | None = None) -> Workspace:
        if not valid_key(key):
            raise ValueError("not a workspace key")
        return cls(key, root if root is not None else data_root())

    @property
    def folder(self) -> Path:
        return self.root / "visitors" / hashlib.sha256(self.key.encode("ascii")).hexdigest()[:32]

    @property
    def runs(self) -> Path:
        return self.folder / "runs"

    @property
    def uploads(self) -> Path:
        return self.folder / "uploads"

    @property
    def models(self) -> Path:
        return self.folder / "models"

    def load_settings(self) -> dict[str, Any]:
        """The saved settings, or {} (missing or unreadable: the defaults apply)."""
        try:
            data = json.loads((self.folder / SETTINGS_FILE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def save_settings(self, settings: dict[str, Any]) -> None:
        atomic_write_text(self.folder / SETTINGS_FILE, json.dumps(settings, ensure_ascii=False, sort_keys=True))
