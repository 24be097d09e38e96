"""The user's errors, apart from bugs: what a front end shows as one line, and what keeps its traceback.

Every exception that `retrieval` or `indexer` raise on purpose is a `RetrievalError`; everything that
`storage` raises on purpose is a `storage.StorageError` (storage imports nothing of ours, so it has its
own base). `USER_ERRORS` is both: the CLIs print those as one line ("error: ...", exit code 2) and the UI
as a warning; any other exception is a bug and keeps its traceback (a numpy shape error is not the
user's to fix). The subclasses also derive from `ValueError` / `LookupError` so callers that caught
those before keep working.

    from retrieval.errors import USER_ERRORS, RetrievalError, InvalidInputError, NotFoundError, MediaError
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Sequence
from typing import Any

from retrieval.terminal import plain
from storage.errors import StorageError


class RetrievalError(Exception):
    """Base of everything retrieval and indexer raise on purpose: the user's to fix, shown as one line."""


class InvalidInputError(RetrievalError, ValueError):
    """A parameter, a query, a manifest line or a file's content that cannot be used, and why."""


class NotFoundError(RetrievalError, LookupError):
    """A named collection, preset, encoder, strategy or file that does not exist."""


class ClusterError(RetrievalError, ConnectionError):
    """A Ray cluster refused or lost the work, with what to set or check (authentication, address)."""


class MediaError(InvalidInputError):
    """A file that cannot be used, with the reason in words (`retrieval.media` raises it)."""

    def __init__(self, source: object, reason: str) -> None:
        self.source = describe(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


class WeightsNotFoundError(NotFoundError):
    """Pretrained weights are not on disk; the message says which model, where we looked, what to do.

    `combine` joins several into one, so a profile with three missing models says so in one run."""

    def __init__(self, model: str, looked: Sequence[str], hint: str) -> None:
        self.model, self.looked, self.hint = model, list(looked), hint
        self.missing: list[WeightsNotFoundError] = [self]
        places = "\n  ".join(self.looked) or "(nowhere)"
        super().__init__(f"weights for {model} are not on this machine.\nLooked in:\n  {places}\n{hint}")

    @classmethod
    def combine(cls, errors: Sequence[WeightsNotFoundError]) -> WeightsNotFoundError:
        if len(errors) == 1:
            return errors[0]
        combined = cls(
            ", ".join(e.model for e in errors), [p for e in errors for p in e.looked], "\n".join(e.hint for e in errors)
        )
        combined.missing = [m for e in errors for m in e.missing]
        combined.args = (
            f"{len(combined.missing)} models' weights are not on this machine:\n\n"
            + "\n\n".join(f"{n}. {e}" for n, e in enumerate(combined.missing, start=1)),
        )
        return combined


USER_ERRORS: tuple[type[BaseException], ...] = (RetrievalError, StorageError)

# OS errors about a named file are the environment's (a missing file, no permission, a full disk), not bugs.
_FILE_ERRNOS = {
    errno.ENOENT,
    errno.EACCES,
    errno.EPERM,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.ENAMETOOLONG,
    errno.ELOOP,
}


def describe(source: object) -> str:
    """A short name for an input: its path, or its type and size (never the whole value)."""
    from pathlib import Path

    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    shape = getattr(source, "shape", None)
    if shape is not None:
        return f"<array {tuple(shape)}>"
    return f"<{type(source).__name__}>"


def user_message(exc: BaseException, db: str | None = None) -> str | None:
    """The one line to show for a user error, or None for a bug (which keeps its traceback)."""
    if isinstance(exc, USER_ERRORS):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None and exc.errno in _FILE_ERRNOS:
        return f"{exc.filename}: {exc.strerror}"
    from sqlalchemy import exc as sa

    if isinstance(exc, sa.ArgumentError):
        return f"{db or 'database URL'}: not a usable database URL ({exc})"
    if isinstance(exc, sa.DatabaseError) and not isinstance(
        exc, (sa.ProgrammingError, sa.IntegrityError, sa.InternalError, sa.NotSupportedError)
    ):  # the file or server, not our SQL: "file is not a database", "unable to open", "disk I/O error"
        from storage.db import unusable_message

        return unusable_message(db, exc)
    return None


def reportable(exc: BaseException) -> bool:
    return user_message(exc) is not None


def run_command(func: Callable[[Any], int], args: Any) -> int:
    """Run a CLI command: user errors become one line on stderr and exit code 2, bugs keep their traceback."""
    try:
        return func(args)
    except KeyboardInterrupt:
        print("interrupted: what was written is consistent; run the same command again to finish", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_message(exc, getattr(args, "db", None))
        if message is None:
            raise
        print(f"error: {plain(message)}", file=sys.stderr)
        return 2
