"""Errors a user can act on, printed as one line instead of a stack trace."""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., int | None])


class TickerlakeError(Exception):
    """Base for errors whose message alone tells the user what to fix."""


class ConfigError(TickerlakeError):
    """A setting is missing or invalid; the message names the environment variable."""


class StackError(TickerlakeError):
    """A local service could not be started, reached or stopped."""


def one_line_errors(main: F) -> F:
    """Wrap a CLI entry point: a TickerlakeError prints one line to stderr and exits 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except TickerlakeError as exc:
            print(f"tickerlake: error: {exc}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
