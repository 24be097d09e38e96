"""Which exceptions are the user's to fix (shown as one line) rather than bugs (shown as a traceback)."""

from __future__ import annotations

from sqlalchemy.exc import ArgumentError, OperationalError

from retrieval.encoders.base import WeightsNotFoundError
from retrieval.media import MediaError
from storage import StorageError

USER_ERRORS: tuple[type[BaseException], ...] = (
    StorageError, WeightsNotFoundError, MediaError, FileNotFoundError, PermissionError, ValueError, LookupError,
    ArgumentError, OperationalError,
)


def reportable(exc: BaseException) -> bool:
    return isinstance(exc, USER_ERRORS)
