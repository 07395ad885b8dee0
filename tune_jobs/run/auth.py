"""The cluster token: where Ray looks for it, and keeping the file private (mode 600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def token_path() -> Path:
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()


def read_token() -> str | None:
    """The cluster token, found where Ray itself looks for it."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = token_path()
    return path.read_text().strip() if path.is_file() else None


def secure_token_file() -> str | None:
    """Make the token file readable by its owner only; a message if it had to be repaired.

    Anyone who can read the token can submit jobs, that is run code, on the cluster.
    """
    path = token_path()
    if not path.is_file():
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077 == 0:
        return None
    path.chmod(0o600)
    return (f"the cluster token {path} was readable by others (mode {mode:o}); "
            "it is now 600 (owner only)")
