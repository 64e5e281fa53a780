"""The one way the local stack writes a file holding a secret: owner-only from its first byte."""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_secret_file(path: Path, text: str, *, replace: bool = False) -> bool:
    """Write `text` to `path` with mode 600 (created that way, never world-readable in between).

    Without `replace`, an existing file is left untouched and False is returned."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)
    return True


def persistent_secret(path: Path, generate=lambda: secrets.token_urlsafe(32)) -> str:
    """A random key generated once per state directory (never committed, never logged)."""
    write_secret_file(path, generate())
    return path.read_text().strip()
