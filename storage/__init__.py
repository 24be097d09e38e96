"""Storage: the database (SQLAlchemy), vector tables (float16 files) and vector stores (FAISS, Milvus).

Imports none of the application's other packages.
"""

from storage.catalog import IndexCatalog, MissingVectorsError
from storage.db import Database, collection_folder, default_vector_base, sqlite_path
from storage.errors import (
    CorruptArtifactError,
    EncoderMismatchError,
    ForeignArtifactError,
    SchemaError,
    StorageError,
    TableMismatchError,
)
from storage.faiss_store import FaissStore, default_factory, gpu_count
from storage.lock import CollectionBusyError, CollectionLock, remove_stale_temporaries
from storage.models import (
    Asset,
    CheckpointRecord,
    Collection,
    EncoderRecord,
    IndexBuild,
    Item,
    SkippedFile,
    TranscriptRow,
)
from storage.vector_store import StoreBackend, VectorStore, normalise_backend, open_backend
from storage.vectors import VectorStorage, VectorTable, field_key

__all__ = [
    "Asset",
    "CheckpointRecord",
    "Collection",
    "CollectionBusyError",
    "CollectionLock",
    "CorruptArtifactError",
    "Database",
    "EncoderMismatchError",
    "EncoderRecord",
    "FaissStore",
    "ForeignArtifactError",
    "IndexBuild",
    "IndexCatalog",
    "Item",
    "MissingVectorsError",
    "SchemaError",
    "SkippedFile",
    "StorageError",
    "StoreBackend",
    "TableMismatchError",
    "TranscriptRow",
    "VectorStorage",
    "VectorStore",
    "VectorTable",
    "collection_folder",
    "default_factory",
    "default_vector_base",
    "field_key",
    "gpu_count",
    "normalise_backend",
    "open_backend",
    "remove_stale_temporaries",
    "sqlite_path",
]
