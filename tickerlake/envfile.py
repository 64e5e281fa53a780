"""Write `.env` from `.env.example` with fresh random secrets (never overwrites an existing one).

`python -m tickerlake.envfile [PATH]`. Secrets are generated here, on the user's machine, so none
is ever committed; the file is created owner-only.
"""
from __future__ import annotations

import os
import re
import secrets
import sys
from pathlib import Path

from tickerlake.settings import REPO_ROOT

SECRET_VARS = re.compile(r"^((?:TICKERLAKE|AIRFLOW)_\w*(SECRET|PASSWORD)\w*)=.*$", re.MULTILINE)


def render(example: str) -> str:
    return SECRET_VARS.sub(lambda m: f"{m.group(1)}={secrets.token_urlsafe(24)}", example)


def write_env_file(target: Path, example: Path = REPO_ROOT / ".env.example") -> bool:
    """Create `target` from `example`; False (untouched) if it exists already."""
    if target.exists():
        return False
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(render(example.read_text()))
    return True


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else REPO_ROOT / ".env"
    created = write_env_file(target)
    print(f"{target}: {'created with random secrets' if created else 'exists, left as is'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
