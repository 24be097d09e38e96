"""Which exceptions are the user's to fix (shown as one line) rather than bugs (shown as a traceback)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import ArgumentError, OperationalError

from retrieval.encoders.base import WeightsNotFoundError
from retrieval.media import MediaError
from storage import StorageError

USER_ERRORS: tuple[type[BaseException], ...] = (
    StorageError,
    WeightsNotFoundError,
    MediaError,
    FileNotFoundError,
    PermissionError,
    ValueError,
    LookupError,
    ArgumentError,
    OperationalError,
)


def reportable(exc: BaseException) -> bool:
    return isinstance(exc, USER_ERRORS)


def run_command(func: Callable[[Any], int], args: Any) -> int:
    """Run a CLI command: user errors become one line on stderr and exit code 2, bugs keep their traceback."""
    try:
        return func(args)
    except KeyboardInterrupt:
        print("interrupted: what was written is consistent; run the same command again to finish", file=sys.stderr)
        return 130
    except Exception as exc:
        if not reportable(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
