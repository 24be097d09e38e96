"""The indexer: sources → decode → encode → storage → indexes. Sits on `retrieval` and `storage`."""

from indexer.pipeline import Indexer, IndexSummary
from indexer.sources import scan

__all__ = ["IndexSummary", "Indexer", "scan"]
