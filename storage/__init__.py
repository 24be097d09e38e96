"""Storage: the database (SQLAlchemy), vector tables (float16 files) and FAISS indexes.

Imports none of the application's other packages.
"""

from storage.catalog import IndexCatalog
from storage.db import Database, default_vector_dir, sqlite_path
from storage.errors import CorruptArtifactError, EncoderMismatchError, SchemaError, StorageError
from storage.lock import CollectionBusyError, CollectionLock, remove_stale_temporaries
from storage.faiss_store import VectorStore, default_factory, gpu_count
from storage.models import Asset, CheckpointRecord, Collection, EncoderRecord, IndexBuild, Item, SkippedFile
from storage.vectors import VectorStorage, VectorTable, field_key

__all__ = [
    "Asset", "CheckpointRecord", "CollectionBusyError", "CollectionLock", "Collection", "CorruptArtifactError", "Database", "EncoderMismatchError", "EncoderRecord",
    "IndexBuild", "IndexCatalog", "Item", "SchemaError", "SkippedFile", "StorageError", "VectorStorage", "VectorStore",
    "VectorTable", "default_factory", "default_vector_dir", "field_key", "gpu_count", "remove_stale_temporaries", "sqlite_path",
]
