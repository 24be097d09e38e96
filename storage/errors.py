"""Typed errors: library code raises these, front ends turn them into messages."""

from __future__ import annotations

import errno

# A write the environment refused (a full disk, a quota, a read-only or forbidden folder): the user's to fix.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


class StorageError(Exception):
    """Base of everything the storage layer raises on purpose."""


class SchemaError(StorageError):
    """The database was written by a newer version of the application."""


class EncoderMismatchError(StorageError):
    """Vectors or an index were made by other encoders (or dimensions) than the ones asked for."""


class CorruptArtifactError(StorageError):
    """A vector or index file could not be read back."""


class ForeignArtifactError(StorageError):
    """A vector table belongs to another collection or database (they share a folder)."""


class TableMismatchError(StorageError):
    """A vector table's content is not the one the database recorded (a backup restored over one of them)."""


class ReadOnlyDatabaseError(StorageError):
    """The database refused a write: a role that may only read, or a read-only SQLite file."""


class DatabaseUnavailableError(StorageError):
    """The database cannot be used now (a server down or restarting, a full disk, a locked file): nothing was
    half-written, and the same call succeeds once it answers."""
