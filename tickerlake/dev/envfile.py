"""Write `.env` from `.env.example` with fresh random secrets (never overwrites an existing one).

`python -m tickerlake.dev.envfile [PATH]`. Secrets are generated here, on the user's machine, so none
is ever committed; the file is created owner-only.
"""
from __future__ import annotations

import argparse
import re
import secrets
import sys
from pathlib import Path

from tickerlake.core.settings import REPO_ROOT
from tickerlake.dev.secret_files import write_secret_file

SECRET_VARS = re.compile(r"^((?:TICKERLAKE|AIRFLOW)_\w*(SECRET|PASSWORD)\w*)=.*$", re.MULTILINE)


def render(example: str) -> str:
    return SECRET_VARS.sub(lambda m: f"{m.group(1)}={secrets.token_urlsafe(24)}", example)


def write_env_file(target: Path, example: Path = REPO_ROOT / ".env.example") -> bool:
    """Create `target` from `example`; False (untouched) if it exists already."""
    if target.exists():
        return False
    return write_secret_file(target, render(example.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickerlake.dev.envfile", description=__doc__.split("\n")[0])
    parser.add_argument("target", nargs="?", type=Path, default=REPO_ROOT / ".env")
    args = parser.parse_args(argv)
    created = write_env_file(args.target)
    print(f"{args.target}: {'created with random secrets' if created else 'exists, left as is'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
